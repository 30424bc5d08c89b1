"""The one exception type for bad input: the CLI prints its message on one line, no traceback."""


class AnchorEmbedError(Exception):
    """A user-facing problem (bad file, bad flag, mismatched artefact), stated in one line."""
