"""The phone fold of the phone error rate: TIMIT labels and PocketSphinx's ARPAbet phones
both to the 39-phone set (data_prep's fold), closures, silences, ``q`` and fillers dropped."""

from __future__ import annotations

from data_prep.phones import DELETED39, FOLD39

SILENCE = "sil"  #: what the 39 fold makes of closures and silences (h#, pau, epi)


def fold_timit(label: str) -> str | None:
    """A TIMIT label (61 or 39 set) -> its 39-set phone, or None for a silence, a closure or ``q``."""
    label = label.strip().lower()
    if label in DELETED39:
        return None
    phone = FOLD39.get(label, label)
    return None if phone == SILENCE else phone


def fold_recognised(word: str) -> str | None:
    """A PocketSphinx phone (``AA``, ``SIL``, ``+NSN+``, ...) -> its 39-set phone, or None
    for a silence or filler."""
    if word.startswith(("+", "<", "[")) or word.upper() in ("SIL", "SP"):
        return None
    return fold_timit(word)
