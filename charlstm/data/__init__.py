"""The corpus and everything that reads it: files, folders, archives, records, documents, tasks, the vocabulary and the encoded cache."""
