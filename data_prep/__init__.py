"""Reading TIMIT-style corpora and preparing next-sample examples."""

from pathlib import Path

#: The small synthesised TIMIT-layout corpus shipped with the package.
DEMO_CORPUS = Path(__file__).resolve().parent / "demo_corpus"

#: Version of the prepared dataset format written by ``waveform-mdn prepare``
#: (2: no ``phones.npy``; the phone of a sample comes from ``segments.npy``).
FORMAT_VERSION = 2


class PrepareError(ValueError):
    """A preparation that cannot go on (bad options, empty selection, split, silent data);
    the message says what to change."""
