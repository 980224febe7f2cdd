"""Fetching CMU ARCTIC speakers (``torchaudio.datasets.CMUARCTIC``; needs network access to
festvox.org): ``python -m data_prep.arctic ROOT --speakers slt,bdl`` prints the corpus
folder (``cmu_us_<spk>_arctic/{wav,lab}``) to hand to ``waveform-mdn prepare``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

SPEAKERS = "aew ahw aup awb axb bdl clb eey fem gka jmk ksp ljm lnh rms rxr slp slt".split()


def fetch(root: str | Path, speakers: list[str], download: bool = True) -> Path:
    """Download (or with ``download=False`` check) the speakers; returns the corpus folder."""
    from torchaudio.datasets import CMUARCTIC

    for spk in speakers:
        if spk not in SPEAKERS:
            raise ValueError(f"unknown CMU ARCTIC speaker {spk!r}; known: {' '.join(SPEAKERS)}")
        Path(root).mkdir(parents=True, exist_ok=True)
        CMUARCTIC(str(root), url=spk, download=download)
        if not (lab := Path(root) / "ARCTIC" / f"cmu_us_{spk}_arctic" / "lab").is_dir():
            raise FileNotFoundError(f"{lab}: the release has no phone labels (lab/) for speaker {spk}")
    return Path(root) / "ARCTIC"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m data_prep.arctic", description=__doc__.split("\n")[0])
    p.add_argument("root", help="download root (torchaudio's `root`)")
    p.add_argument("--speakers", default="slt", help="comma-separated, e.g. slt,bdl")
    p.add_argument("--no-download", action="store_true", help="only check what is already there")
    a = p.parse_args(argv)
    try:
        print(fetch(a.root, [s for s in a.speakers.split(",") if s], download=not a.no_download))
    except Exception as e:  # network errors come in many types
        print(f"error: fetching CMU ARCTIC failed: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
