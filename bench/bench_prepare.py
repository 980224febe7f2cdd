"""Benchmark of ``waveform-mdn prepare`` on a TIMIT-sized corpus.

Builds (untimed) a corpus in the TIMIT LDC layout with NIST SPHERE ``.WAV`` files in a
temporary directory by tiling the utterances of the shipped demo corpus over many speaker
folders: most utterances are hard links to demo files, and a share of them are two demo
utterances joined into one new file, so that the corpus has about TIMIT's duration
(6,300 utterances, 5.4 hours). Then runs the preparation in a child process and reports
its wall time and peak resident memory (``ru_maxrss`` of that child) against the size of
the prepared arrays (every ``.npy`` written: ``wave.npy + segments.npy`` since format 2,
which dropped ``phones.npy``).

Goals: under 60 s, and peak memory under 2x the prepared arrays.

    .venv/bin/python bench/bench_prepare.py                 # full size
    .venv/bin/python bench/bench_prepare.py --utterances 600
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from data_prep import DEMO_CORPUS

TIMIT_UTTERANCES = 6300
TIMIT_HOURS = 5.4
GOAL_SECONDS = 60.0
GOAL_RATIO = 2.0
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _demo_utterances() -> list[tuple[Path, Path, int]]:
    """(wav, phn, frames) of every demo utterance, sorted."""
    out = []
    for wav in sorted(DEMO_CORPUS.rglob("*.WAV")):
        phn = wav.with_suffix(".PHN")
        out.append((wav, phn, sf.info(str(wav)).frames))
    return out


def _speaker_id(k: int) -> str:
    sex = "MF"[k % 2]
    a, b, c = (k // 26 // 26) % 26, (k // 26) % 26, k % 26
    return f"{sex}{LETTERS[a]}{LETTERS[b]}{LETTERS[c]}{k // 17576}"


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def build_corpus(root: Path, n_utts: int, hours: float, sample_rate: int = 16000) -> dict:
    """TIMIT-layout corpus of ``n_utts`` utterances and about ``hours`` hours."""
    pool = _demo_utterances()
    n_spk = -(-n_utts // 10)
    n_train = round(n_spk * 462 / 630)
    target = hours * 3600 * sample_rate
    base = sum(pool[i % len(pool)][2] for i in range(n_utts))
    extra_needed = max(target - base, 0)
    total = 0
    joined = 0
    u = 0
    for k in range(n_spk):
        part = "TRAIN" if k < n_train else "TEST"
        spk_dir = root / part / f"DR{1 + k % 8}" / _speaker_id(k)
        spk_dir.mkdir(parents=True)
        names = ["SA1", "SA2"] + [f"SI{1000 + 3 * k + j}" for j in range(3)] + [f"SX{10 + 5 * k + j}" for j in range(5)]
        for name in names:
            if u >= n_utts:
                break
            wav, phn, frames = pool[u % len(pool)]
            if extra_needed > 0 and u % 7 == 3:  # join a second utterance to this one
                wav2, phn2, frames2 = pool[(u * 5 + 11) % len(pool)]
                x = np.concatenate([sf.read(str(wav), dtype="int16")[0], sf.read(str(wav2), dtype="int16")[0]])
                sf.write(str(spk_dir / f"{name}.WAV"), x, sample_rate, format="NIST", subtype="PCM_16")
                lines = phn.read_text().split("\n")
                for line in phn2.read_text().splitlines():
                    a, b, p = line.split()
                    lines.append(f"{int(a) + frames} {int(b) + frames} {p}")
                (spk_dir / f"{name}.PHN").write_text("\n".join(x for x in lines if x.strip()) + "\n")
                extra_needed -= frames2
                frames += frames2
                joined += 1
            else:
                _link(wav, spk_dir / f"{name}.WAV")
                _link(phn, spk_dir / f"{name}.PHN")
            total += frames
            u += 1
    return {"utterances": u, "speakers": n_spk, "joined": joined, "hours": total / sample_rate / 3600}


CHILD = (
    "import sys, time, importlib; t0 = time.perf_counter(); "
    "main = importlib.import_module(sys.argv[1] + '.cli').main; rc = main(sys.argv[2:]); "
    "print(f'child total {time.perf_counter() - t0:.2f} s', file=sys.stderr); sys.exit(rc)"
)


def run_measured(args: list[str], package: str = "data_prep") -> tuple[float, int, int, str]:
    """(wall seconds, peak RSS bytes, exit code, output) of the preparation in a child."""
    t0 = time.perf_counter()
    p = subprocess.Popen([sys.executable, "-c", CHILD, package, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    return wall, ru.ru_maxrss * 1024, p.returncode, out.decode()


def baseline_rss(package: str = "data_prep") -> int:
    """Peak RSS of a child that only imports the preparation code."""
    p = subprocess.Popen([sys.executable, "-c", f"import {package}.cli, {package}.prepare, numpy, tqdm"])
    _, _, ru = os.wait4(p.pid, 0)
    return ru.ru_maxrss * 1024


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--utterances", type=int, default=TIMIT_UTTERANCES,
                    help=f"number of utterances (default {TIMIT_UTTERANCES}, TIMIT's size)")
    ap.add_argument("--hours", type=float, default=None,
                    help=f"target duration (default {TIMIT_HOURS} h scaled by utterances/{TIMIT_UTTERANCES})")
    ap.add_argument("--workdir", default=None, help="where to build (default: a temporary directory)")
    ap.add_argument("--keep", action="store_true", help="keep the corpus and the prepared output")
    ap.add_argument("--extra", default="", help="extra arguments for prepare, e.g. '--phone-set timit39'")
    ap.add_argument("--package", default="data_prep",
                    help="package whose .cli runs the preparation (to compare against a copy of an "
                         "older version importable under another name; default data_prep)")
    a = ap.parse_args(argv)
    hours = a.hours if a.hours is not None else TIMIT_HOURS * a.utterances / TIMIT_UTTERANCES

    work = Path(a.workdir or tempfile.mkdtemp(prefix="bench_prepare_"))
    work.mkdir(parents=True, exist_ok=True)
    corpus, out = work / "corpus", work / "prepared"
    try:
        t0 = time.perf_counter()
        info = build_corpus(corpus, a.utterances, hours)
        t_build = time.perf_counter() - t0
        print(f"built {info['utterances']:,} utterances, {info['speakers']} speakers, "
              f"{info['hours']:.2f} h ({info['joined']} joined files) in {t_build:.1f} s at {corpus}",
              flush=True)
        base = baseline_rss(a.package)
        wall, rss, rc, log = run_measured(["prepare", str(corpus), str(out), "--quiet", *a.extra.split()],
                                          a.package)
        if rc != 0:
            print(log)
            print(f"prepare failed with exit code {rc}")
            return 1
        arrays = sum(f.stat().st_size for f in out.glob("*.npy"))
        ratio = rss / arrays
        mib = 1 << 20
        rows = [
            ("package", a.package, ""),
            ("utterances", f"{info['utterances']:,}", ""),
            ("audio", f"{info['hours']:.2f} h", ""),
            ("prepare wall time", f"{wall:.1f} s", f"< {GOAL_SECONDS:.0f} s: {'PASS' if wall < GOAL_SECONDS else 'FAIL'}"),
            ("peak RSS (child)", f"{rss / mib:,.0f} MiB", f"(import alone: {base / mib:,.0f} MiB)"),
            ("prepared arrays", f"{arrays / mib:,.0f} MiB", " + ".join(sorted(f.name for f in out.glob("*.npy")))),
            ("peak RSS / arrays", f"{ratio:.2f}", f"< {GOAL_RATIO:.0f}: {'PASS' if ratio < GOAL_RATIO else 'FAIL'}"),
            ("cores", f"{os.cpu_count()}", f"load average {os.getloadavg()[0]:.1f}"),
        ]
        print()
        print(f"{'measure':<20}{'value':>14}  goal / note")
        print("-" * 64)
        for name, value, note in rows:
            print(f"{name:<20}{value:>14}  {note}")
        print()
        print("\n".join(line for line in log.splitlines() if line.strip())[-2000:])
        return 0 if wall < GOAL_SECONDS and ratio < GOAL_RATIO else 1
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}")


if __name__ == "__main__":
    sys.exit(main())
