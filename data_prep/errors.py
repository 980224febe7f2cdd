"""The one error base of the toolkit."""


class InputError(ValueError):
    """Bad input the user can fix (a file, an option); the message names it on one line.
    :func:`waveform_mdn.cli.main` prints it and exits 2."""
