"""The `aln` command line."""
