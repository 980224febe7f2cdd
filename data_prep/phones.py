"""Phone sets: TIMIT's 61 symbols and the fold to 39 of Lee and Hon (1989), see docs/data.md."""

from __future__ import annotations

from .errors import InputError

TIMIT61 = (
    "aa ae ah ao aw ax ax-h axr ay b bcl ch d dcl dh dx eh el em en eng epi er ey f g gcl "
    "h# hh hv ih ix iy jh k kcl l m n ng nx ow oy p pau pcl q r s sh t tcl th uh uw ux v w y z zh"
).split()
FOLD39 = {
    "ao": "aa", "ax": "ah", "ax-h": "ah", "axr": "er", "hv": "hh", "ix": "ih", "el": "l", "em": "m",
    "en": "n", "nx": "n", "eng": "ng", "zh": "sh", "ux": "uw",
    **{s: "sil" for s in ("bcl", "dcl", "gcl", "pcl", "tcl", "kcl", "h#", "pau", "epi")},
}
DELETED39 = frozenset({"q"})  # merged into a neighbour: samples cannot be deleted
TIMIT39 = sorted({FOLD39.get(p, p) for p in TIMIT61 if p not in DELETED39})
PHONE_SETS = ("timit61", "timit39")
MERGE = "<merge>"  #: what :meth:`PhoneSet.map_label` returns for a label merged into its neighbour


class UnknownPhoneError(InputError):
    """A label outside the phone set (and its extra mapping)."""


class PhoneSet:
    """A named phone inventory with the mapping from corpus labels to its ids; ``extra_map``
    maps further labels (e.g. ``{"brth": "pau"}``) before the fold."""

    def __init__(self, name: str = "timit61", extra_map: dict[str, str] | None = None):
        if name not in PHONE_SETS:
            raise InputError(f"unknown phone set {name!r}; choose one of {', '.join(PHONE_SETS)}")
        self.name = name
        self.symbols: list[str] = list(TIMIT61 if name == "timit61" else TIMIT39)
        self.index = {s: i for i, s in enumerate(self.symbols)}
        self.extra_map = dict(extra_map or {})
        for src, dst in self.extra_map.items():
            if self._fold(dst) is None:
                raise InputError(f"phone mapping {src}={dst}: {dst!r} is not a symbol of {name} "
                                 f"(symbols: {' '.join(self.symbols)})")

    def _fold(self, label: str) -> str | None:
        if self.name == "timit39":
            if label in DELETED39:
                return MERGE
            label = FOLD39.get(label, label)
        return label if label in self.index else None

    def map_label(self, label: str) -> str:
        """Corpus label -> symbol of this set, or :data:`MERGE`."""
        mapped = self._fold(self.extra_map.get(label, label))
        if mapped is None:
            raise UnknownPhoneError(f"unknown phone {label!r} for phone set {self.name} "
                                    "(configure a mapping, e.g. --phone-map LABEL=SYMBOL)")
        return mapped

    def id(self, symbol: str) -> int:
        return self.index[symbol]

    def to_id(self, label: str) -> int | None:
        """Corpus label -> id of its symbol, or None for a label merged into its neighbour."""
        symbol = self.map_label(label)
        return None if symbol == MERGE else self.index[symbol]

    def __len__(self) -> int:
        return len(self.symbols)


def parse_phone_map(items: list[str] | None) -> dict[str, str]:
    """``["brth=pau,sil=h#"]`` -> ``{"brth": "pau", "sil": "h#"}``."""
    out = {}
    for part in (p for item in items or [] for p in item.split(",") if p.strip()):
        if "=" not in part:
            raise InputError(f"--phone-map: phone mapping {part!r} is not of the form LABEL=SYMBOL")
        src, dst = (x.strip() for x in part.split("=", 1))
        out[src] = dst
    return out
