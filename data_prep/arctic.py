"""Fetching CMU ARCTIC speakers with ``torchaudio.datasets.CMUARCTIC``.

The release holds ``cmu_us_<spk>_arctic/wav/*.wav`` and Festival phone labels in
``cmu_us_<spk>_arctic/lab/*.lab``, which :mod:`data_prep.corpus` reads as the ``arctic``
layout. ``python -m data_prep.arctic ROOT --speakers slt,bdl`` downloads (needs network
access to festvox.org; checksums are verified by torchaudio) and prints the corpus folder
to hand to ``waveform-mdn prepare``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

SPEAKERS = ("aew ahw aup awb axb bdl clb eey fem gka jmk ksp ljm lnh rms rxr slp slt").split()


def corpus_dir(root: str | Path) -> Path:
    """Folder holding the ``cmu_us_*_arctic`` voices under a torchaudio download root."""
    return Path(root) / "ARCTIC"


def fetch(root: str | Path, speakers: list[str], download: bool = True) -> Path:
    from torchaudio.datasets import CMUARCTIC

    for spk in speakers:
        if spk not in SPEAKERS:
            raise ValueError(f"unknown CMU ARCTIC speaker {spk!r}; known: {' '.join(SPEAKERS)}")
        Path(root).mkdir(parents=True, exist_ok=True)
        CMUARCTIC(str(root), url=spk, download=download)
        lab = corpus_dir(root) / f"cmu_us_{spk}_arctic" / "lab"
        if not lab.is_dir():
            raise FileNotFoundError(f"{lab}: the release has no phone labels (lab/) for speaker {spk}")
    return corpus_dir(root)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m data_prep.arctic", description=__doc__.split("\n\n")[0])
    p.add_argument("root", help="download root (torchaudio's `root`)")
    p.add_argument("--speakers", default="slt", help="comma-separated, e.g. slt,bdl")
    p.add_argument("--no-download", action="store_true", help="only check what is already there")
    a = p.parse_args(argv)
    try:
        print(fetch(a.root, [s for s in a.speakers.split(",") if s], download=not a.no_download))
    except Exception as e:  # network errors come in many types; say what happened
        print(f"error: fetching CMU ARCTIC failed: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
