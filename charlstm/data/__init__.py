"""The corpus and what reads it: files, folders, archives, records, documents, tasks,
the vocabulary and the encoded cache."""
