"""The errors of ``compare``: the CLI turns them into one line (exit 1, or 2 for data)."""


class CompareError(ValueError):
    """The runs cannot be compared as asked (missing files, tags, keys, bad arguments)."""


class DataMismatchError(CompareError):
    """The runs were trained on different data or normalisation."""
