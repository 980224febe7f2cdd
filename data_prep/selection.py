"""Which utterances to keep (:class:`Selection`) and which units go to validation
(:class:`SplitRule`: seeded, reproducible)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from .corpus import Utterance
from .errors import InputError


@dataclass
class Selection:
    """Which utterances (and segments) to keep; ``None`` means no restriction."""

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

        named = self.utterances is None or bool({u.id.upper(), Path(u.audio).stem.upper()}
                                                & {k.upper() for k in self.utterances})
        return (named and _in(u.speaker, self.speakers) and _in(u.dialect, self.dialects)
                and _in(u.utt_type, self.utt_types)
                and (self.corpus_split is None or u.corpus_split == self.corpus_split.lower()))


@dataclass
class SplitRule:
    """``mode``: ``per_speaker`` takes ``valid`` units (a count if >= 1, else a fraction) from
    each speaker, ``total`` from the whole pool, ``official`` makes the corpus's test part
    validation, ``none`` puts everything in train; ``unit``: ``utterance`` or ``sequence``."""

    mode: str = "per_speaker"
    valid: float = 1
    unit: str = "utterance"
    seed: int = 0


def split_labels(units: list[tuple[str, Utterance]], rule: SplitRule) -> list[str]:
    """``"train"`` or ``"valid"`` for each (sequence id, utterance), by ``rule``."""
    if rule.mode == "none":
        return ["train"] * len(units)
    if rule.mode == "official":
        for _, u in units:
            if u.corpus_split is None:
                raise InputError(f"{u.audio}: the official split needs the TIMIT layout (TRAIN/TEST folders)")
        return ["valid" if u.corpus_split == "test" else "train" for _, u in units]
    if rule.unit not in ("utterance", "sequence"):
        raise InputError(f"split unit must be 'utterance' or 'sequence', not {rule.unit!r}")
    keys = [u.id if rule.unit == "utterance" else sid for sid, u in units]
    if rule.mode == "per_speaker":
        groups: dict[str, dict[str, None]] = {}
        for (_, u), key in zip(units, keys):
            groups.setdefault(u.speaker or "", {})[key] = None
    elif rule.mode == "total":
        groups = {"": dict.fromkeys(keys)}
    else:
        raise InputError(f"unknown split mode {rule.mode!r}")
    valid = _draw_valid({name: sorted(g) for name, g in groups.items()}, rule)
    return ["valid" if k in valid else "train" for k in keys]


def _draw_valid(groups: dict[str, list[str]], rule: SplitRule) -> set[str]:
    """``rule.valid`` units of each group, drawn with a seed per group."""
    valid: set[str] = set()
    for name in sorted(groups):
        units = groups[name]
        n = int(rule.valid) if rule.valid >= 1 else int(round(rule.valid * len(units)))
        if n >= len(units) > 0:
            raise InputError(f"speaker {name or '(all)'} has {len(units)} {rule.unit}(s): cannot take {n} "
                             "for validation and keep any for training")
        valid.update(random.Random(f"{rule.seed}:{name}").sample(units, n))
    if not valid:
        raise InputError(f"the split takes no validation data ({rule.mode}, --valid {rule.valid:g} of "
                         f"{sum(len(g) for g in groups.values())} {rule.unit}s); use a larger --valid, or --split none")
    return valid
