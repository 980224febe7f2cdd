"""Reading TIMIT-style corpora and preparing them for next-sample prediction (docs/data.md)."""

from pathlib import Path

DEMO_CORPUS = Path(__file__).resolve().parent / "demo_corpus"  #: the shipped synthesised corpus

#: Version of the prepared format (docs/prepared-format.md); 2: no ``phones.npy``.
FORMAT_VERSION = 2

#: A prepared dataset's ``pad``: the first ``window`` samples of a sequence are skipped as
#: targets, or predicted from a zero-padded window.
PAD_MODES = ("skip", "zero")
