"""`python -m charlstm ...` (and `torchrun -m charlstm ...`) run the same CLI as `charlstm`."""

from charlstm.cli import main

main()
