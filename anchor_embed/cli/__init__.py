"""The `anchor-embed` command line: thin commands over the library functions with the same keyword arguments."""
