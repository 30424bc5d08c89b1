"""The exception type for bad input: the CLI prints its message on one line, no traceback."""


class AnchorEmbedError(Exception):
    """A user-facing problem (bad file, bad flag, mismatched artefact), stated in one line."""


class TrainingCollapsed(AnchorEmbedError):
    """Training stopped because the vectors collapsed (the guard in `training.fit`); callers that train several
    runs (`transfer --choose`) leave such a run out instead of stopping."""
