"""Reading TIMIT-style corpora and preparing them for next-sample prediction.

One idea per module: :mod:`.corpus` finds utterances and reads label files, :mod:`.audio`
reads audio, :mod:`.phones` holds the phone sets, :mod:`.sequences` turns an utterance
into phone segments and sequences, :mod:`.selection` chooses utterances and the
train/valid split, :mod:`.write` writes the arrays, :mod:`.prepare` runs the preparation,
:mod:`.cli` is ``waveform-mdn prepare`` / ``corpus-info``, :mod:`.arctic` fetches CMU ARCTIC.
"""

from pathlib import Path

from .errors import InputError

#: The small synthesised TIMIT-layout corpus shipped with the package.
DEMO_CORPUS = Path(__file__).resolve().parent / "demo_corpus"

#: Version of the prepared dataset format written by ``waveform-mdn prepare``
#: (2: no ``phones.npy``; the phone of a sample comes from ``segments.npy``).
FORMAT_VERSION = 2


class PrepareError(InputError):
    """A preparation that cannot go on (bad options, empty selection, split, silent data);
    the message says what to change."""
