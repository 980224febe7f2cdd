"""Which utterances to keep (:class:`Selection`) and which sequences go to validation
(:class:`SplitRule`, applied by :func:`assign_split`: seeded, reproducible)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from . import PrepareError
from .corpus import Utterance
from .write import StoredSequence


@dataclass
class Selection:
    """Which utterances (and segments) to keep. ``None`` means no restriction."""

    speakers: list[str] | None = None
    dialects: list[str] | None = None
    utt_types: list[str] | None = None
    utterances: list[str] | None = None
    corpus_split: str | None = None  # "train" / "test": the official TIMIT split
    max_utterances: int | None = None
    phone_filter: list[str] | None = None  # keep only segments of these phones, one sequence each
    max_sequences: int | None = None

    def matches(self, u: Utterance) -> bool:
        def _in(value, allowed):
            return allowed is None or (value is not None and value.upper() in {a.upper() for a in allowed})

        if self.utterances is not None:
            keys = {k.upper() for k in self.utterances}
            stem = Path(u.audio).stem.upper()
            if u.id.upper() not in keys and stem not in keys:
                return False
        return (
            _in(u.speaker, self.speakers)
            and _in(u.dialect, self.dialects)
            and _in(u.utt_type, self.utt_types)
            and (self.corpus_split is None or u.corpus_split == self.corpus_split.lower())
        )


@dataclass
class SplitRule:
    """How to choose validation data.

    ``mode``: ``"per_speaker"`` takes ``valid`` units (a count if >= 1, else a fraction)
    from each speaker; ``"total"`` takes ``valid`` units from the whole pool; ``"official"``
    uses the corpus's own train/test split (test becomes valid); ``"none"`` puts everything
    in train. ``unit``: ``"utterance"`` or ``"sequence"`` (they differ with a phone filter).
    """

    mode: str = "per_speaker"
    valid: float = 1
    unit: str = "utterance"
    seed: int = 0


def assign_split(seqs: list[StoredSequence], rule: SplitRule) -> None:
    """Set ``split`` of every sequence to ``"train"`` or ``"valid"`` by ``rule``."""
    if rule.mode == "none":
        return
    if rule.mode == "official":
        for s in seqs:
            if s.utt.corpus_split is None:
                raise PrepareError(
                    f"{s.utt.audio}: the official split needs the TIMIT layout (TRAIN/TEST folders)"
                )
            s.split = "valid" if s.utt.corpus_split == "test" else "train"
        return
    if rule.unit not in ("utterance", "sequence"):
        raise PrepareError(f"split unit must be 'utterance' or 'sequence', not {rule.unit!r}")
    key = (lambda s: s.utt.id) if rule.unit == "utterance" else (lambda s: s.id)
    valid = _draw_valid(_units_by_group(seqs, rule, key), rule)
    for s in seqs:
        s.split = "valid" if key(s) in valid else "train"


def _units_by_group(seqs: list[StoredSequence], rule: SplitRule, key) -> dict[str, list[str]]:
    """Split units (utterance or sequence ids, in order) per speaker, or all in one group."""
    if rule.mode == "per_speaker":
        groups: dict[str, list[str]] = {}
        for s in seqs:
            units = groups.setdefault(s.utt.speaker or "", [])
            if key(s) not in units:
                units.append(key(s))
        return groups
    if rule.mode == "total":
        return {"": list(dict.fromkeys(key(s) for s in seqs))}
    raise PrepareError(f"unknown split mode {rule.mode!r}")


def _draw_valid(groups: dict[str, list[str]], rule: SplitRule) -> set[str]:
    """The validation units: ``rule.valid`` of each group, drawn with a seed per group."""
    valid: set[str] = set()
    for name in sorted(groups):
        units = sorted(groups[name])
        n = int(rule.valid) if rule.valid >= 1 else int(round(rule.valid * len(units)))
        if n >= len(units) and len(units) > 0:
            raise PrepareError(
                f"speaker {name or '(all)'} has {len(units)} {rule.unit}(s): cannot take {n} for "
                "validation and keep any for training"
            )
        rng = random.Random(f"{rule.seed}:{name}")
        valid.update(rng.sample(units, n))
    if not valid:
        raise PrepareError(
            f"the split takes no validation data ({rule.mode}, --valid {rule.valid:g} of "
            f"{sum(len(g) for g in groups.values())} {rule.unit}s); use a larger --valid, or --split none"
        )
    return valid
