"""The typer CLI: each command is a thin wrapper over one library function with the same keyword arguments."""
