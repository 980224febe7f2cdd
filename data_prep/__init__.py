"""Reading TIMIT-style corpora and preparing next-sample examples."""

from pathlib import Path

#: The small synthesised TIMIT-layout corpus shipped with the package.
DEMO_CORPUS = Path(__file__).resolve().parent / "demo_corpus"

#: Version of the prepared dataset format written by ``waveform-mdn prepare``.
FORMAT_VERSION = 1
