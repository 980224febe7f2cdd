"""The errors of ``compare``: bad input (exit 2, reported by :mod:`waveform_mdn.cli`)."""

from data_prep.errors import InputError


class CompareError(InputError):
    """The runs cannot be compared as asked (a missing file, column or key, a bad argument)."""


class DataMismatchError(CompareError):
    """The runs were trained on different data or normalisation."""
