"""Generation: sampling, search, whole documents, and the prime/context rules they share."""
