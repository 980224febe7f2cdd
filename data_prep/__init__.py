"""Reading TIMIT-style corpora and preparing them for next-sample prediction (docs/data.md)."""

from pathlib import Path

DEMO_CORPUS = Path(__file__).resolve().parent / "demo_corpus"  #: the shipped synthesised corpus

#: Version of the prepared format (docs/prepared-format.md); 2: no ``phones.npy``.
FORMAT_VERSION = 2
