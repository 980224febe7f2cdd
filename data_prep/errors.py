"""The one error base of the toolkit: bad input that the user can fix.

Every command catches :class:`InputError` in one place (:func:`waveform_mdn.cli.main`),
prints its message on one line and exits 2. The message names the file (and line) or the
option, and what is wrong.
"""


class InputError(ValueError):
    """Bad input: a file, an option or a combination of them; the message says which and why."""
