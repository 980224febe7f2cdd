"""Generated samples per second of the generation engine for the default 2 x 300 model.

    python bench/bench_generate.py                       # MDN (K=3) and MLP, 1 and 64 streams, 1 and 2 threads
    python bench/bench_generate.py --heads mixture --streams 1 4 16 64 --threads 1 2 --json out.json
    python bench/bench_generate.py --heads all --streams 1 64 --threads 1   # every registered head

Goals (issue 17): MDN, 1 stream, 1 thread >= 16,000 samples/s; 64 streams, 2 threads >= 0.85x
the previous revision in the same run (run its bench back to back with this one). Threads are
set here, as ``waveform-mdn generate`` sets them. The model is randomly initialised, the phone
sequence synthetic (segments of 40-160 ms); the table shows the best and the median of
``--repeats`` runs (other jobs only ever slow a run down).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from data_prep.audio_io import Normalisation  # noqa: E402
from waveform_mdn.generation.engine import GenerationStats, generate  # noqa: E402
from waveform_mdn.generation.inputs import PhoneSequence, Streams, make_prime, sequence_contexts  # noqa: E402
from waveform_mdn.generation.settings import MODES, GenerationSettings  # noqa: E402
from waveform_mdn.heads import HEADS  # noqa: E402
from waveform_mdn.models import WaveformPredictor  # noqa: E402

SR = 16000
N_PHONE_IDS = 62  # TIMIT 61 + "no phone"
COMPONENTS = {"logistic_mixture": 10}  #: components per head: the 2014 MDN's 3, the logistic mixture's 10


def make_model(head: str) -> WaveformPredictor:
    torch.manual_seed(0)
    return WaveformPredictor(head=head, components=COMPONENTS.get(head, 3), hidden=[300, 300], window=240,
                             n_phone_ids=N_PHONE_IDS, norm_mean=0.0, norm_std=0.1, sample_rate=SR).eval()


def synthetic_sequence(n: int, seed: int) -> PhoneSequence:
    rng = np.random.default_rng(seed)
    rows, a = [], 0
    while a < n:
        b = a + int(rng.integers(640, 2560))
        rows.append([a, b, int(rng.integers(0, N_PHONE_IDS - 1))])
        a = b
    table = np.zeros((len(rows), 5), dtype=np.int64)
    table[:, :3] = rows
    table[:, 3] = [N_PHONE_IDS - 1] + [r[2] for r in rows[:-1]]
    table[:, 4] = [r[2] for r in rows[1:]] + [N_PHONE_IDS - 1]
    return PhoneSequence(f"synthetic{seed}", table, n)


def run_once(model, n_streams: int, steps: int, threads: int, mode: str) -> float:
    ctx = sequence_contexts([synthetic_sequence(steps, k) for k in range(n_streams)], steps, "target", 240)
    prime, _ = make_prime("noise", n_streams, 240, Normalisation(0.0, 0.1), list(range(n_streams)))
    st = GenerationStats()
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        generate(model, Streams(ctx, steps, prime, clip=(-10.0, 10.0)), GenerationSettings(mode=mode), stats=st)
    finally:
        torch.set_num_threads(old)
    return st.samples_per_second


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--heads", nargs="+", default=["mixture", "gaussian"], help="registered head names, or 'all'")
    p.add_argument("--streams", nargs="+", type=int, default=[1, 64])
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--mode", default="sample", choices=MODES)
    p.add_argument("--seconds", type=float, default=2.0, help="audio per stream and run for 1 stream")
    p.add_argument("--steps-many", type=int, default=4000, help="steps per run with several streams")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", default=None, help="also write the results here")
    a = p.parse_args(argv)
    heads = list(HEADS) if "all" in a.heads else a.heads
    print(f"# generation benchmark: torch {torch.__version__}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f} at start, mode {a.mode}")
    print("| head | streams | threads | best samples/s | median samples/s | x real time (best) | us/step (best) |")
    print("|---|---|---|---|---|---|---|")
    results = []
    for head in heads:
        model = make_model(head)
        for n_streams in a.streams:
            steps = int(a.seconds * SR) if n_streams == 1 else a.steps_many
            for threads in a.threads:
                rates = [run_once(model, n_streams, steps, threads, a.mode) for _ in range(a.repeats)]
                best, med = max(rates), statistics.median(rates)
                results.append({"head": head, "streams": n_streams, "threads": threads, "steps": steps,
                                "best_samples_per_s": best, "median_samples_per_s": med})
                print(f"| {head} | {n_streams} | {threads} | {best:,.0f} | {med:,.0f} | {best / SR:.1f} | "
                      f"{n_streams / best * 1e6:.1f} |", flush=True)
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")
    if a.json:
        Path(a.json).write_text(json.dumps({"results": results, "torch": torch.__version__, "cpus": os.cpu_count()},
                                           indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
