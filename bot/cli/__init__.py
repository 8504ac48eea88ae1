"""The `kilroy` command line: the parser in main.py, one module per command family."""
