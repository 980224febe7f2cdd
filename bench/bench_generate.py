"""Generated samples per second of ``waveform_mdn.generate`` for the default 2 x 300 model.

    python bench/bench_generate.py                 # MDN (K=3) and MLP, 1 and 64 streams, 1 and 2 threads
    python bench/bench_generate.py --heads mixture --streams 1 --threads 1 --json out.json
    python bench/bench_generate.py --streams 1 2 4 8 --threads 1 --sampler auto tensor
    python bench/bench_generate.py --heads all --streams 1 64 --threads 1   # every registered head

Goals (issue 9, 2-core CPU): MDN, 1 stream, 1 thread >= 45,000 samples/s; MDN, 64
streams, 2 threads >= 300,000 samples/s in aggregate. Threads are set here, as the
``waveform-mdn generate`` entry point sets them (``generate`` itself changes no
process-wide setting).

``--sampler tensor`` makes every step take the head's tensor functions (``auto``: the
head's row sampler in Python floats for up to ``ROW_STREAMS`` streams on CPU, as
``generate`` does): the comparison that keeps (or removes) the row sampler.

The model is randomly initialised (speed does not depend on the weights); the phone
sequence is synthetic (segments of 40-160 ms). Each configuration runs ``--repeats``
times; the table shows the best and the median run (other jobs on a shared machine only
ever slow a run down). The breakdown times the parts of one step in isolation with the
same shapes: the three matrix products, the two activations, and the rest of the step
(context bias, sampling, guard, buffer write, Python) as the difference to the full step.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from waveform_mdn import generate as G  # noqa: E402
from waveform_mdn.generation.network import StepNetwork  # noqa: E402
from waveform_mdn.heads import HEADS  # noqa: E402
from waveform_mdn.models import WaveformPredictor  # noqa: E402

SR = 16000
N_PHONE_IDS = 62  # TIMIT 61 + "no phone"


#: components per head in this benchmark: the 2014 MDN's 3, the logistic mixture's usual 10
COMPONENTS = {"logistic_mixture": 10}


def make_model(head: str) -> WaveformPredictor:
    torch.manual_seed(0)
    return WaveformPredictor(head=head, components=COMPONENTS.get(head, 3), hidden=[300, 300], window=240,
                             n_phone_ids=N_PHONE_IDS, norm_mean=0.0, norm_std=0.1, sample_rate=SR).eval()


def synthetic_sequence(n: int, seed: int) -> G.PhoneSequence:
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
    return G.PhoneSequence(f"synthetic{seed}", table, n)


def run_once(model, n_streams: int, steps: int, threads: int, mode: str, sampler: str) -> tuple[float, str]:
    seqs = [synthetic_sequence(steps, k) for k in range(n_streams)]
    ctx = G.sequence_contexts(seqs, steps, "target", 240)
    prime, _ = G.make_prime("noise", n_streams, 240, 0.0, 0.1, list(range(n_streams)))
    st = G.GenerationStats()
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        G.generate(model, ctx, steps, prime=prime, mode=mode, clip=(-10.0, 10.0), stats=st,
                   row_sampler=False if sampler == "tensor" else None)
    finally:
        torch.set_num_threads(old)
    return st.samples_per_second, st.sampler


def _loop_times(fns: dict, steps: int, rounds: int = 7) -> dict[str, float]:
    """Best microseconds per call of each function, the functions timed in turn (so a
    burst of load from other jobs hits all of them alike)."""
    best = {k: float("inf") for k in fns}
    for f in fns.values():
        f()
    for _ in range(rounds):
        for k, f in fns.items():
            t0 = time.perf_counter()
            for _ in range(steps):
                f()
            best[k] = min(best[k], (time.perf_counter() - t0) / steps * 1e6)
    return best


def breakdown(model, n_streams: int, threads: int, step_us: float) -> dict[str, float]:
    """Microseconds per step of the parts, timed in isolation with the step's shapes: the
    three matrix products, the two activations, the rest (the head's parameters and
    sampler, the guard, the buffer write, Python) as the difference to the full step."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            N = n_streams
            fast = StepNetwork(model.net, N, torch.device("cpu"))
            buf = torch.randn(N, 240 + 2000)
            win = buf[:, 1000:1240]
            bias = torch.randn(N, 300)
            (w2, b2, _), = fast.layers
            hw = fast.head.proj.weight.t().contiguous()
            hb = fast.head.proj.bias
            h1, h2, o = torch.empty(N, 300), torch.empty(N, 300), torch.empty(N, hw.shape[1])
            steps = 2000 if N == 1 else 200

            def matmuls():
                torch.addmm(bias, win, fast.w1t, out=h1)
                torch.addmm(b2, h1, w2, out=h2)
                torch.addmm(hb, h2, hw, out=o)

            def trunk():
                torch.sigmoid(torch.addmm(bias, win, fast.w1t, out=h1), out=h1)
                torch.sigmoid(torch.addmm(b2, h1, w2, out=h2), out=h2)
                torch.addmm(hb, h2, hw, out=o)

            t = _loop_times({"matmuls": matmuls, "trunk": trunk}, steps)
            mm, tr = t["matmuls"], t["trunk"]
    finally:
        torch.set_num_threads(old)
    return {
        "step_us": step_us,
        "matmuls_us": mm,
        "activations_us": max(tr - mm, 0.0),
        "rest_us": max(step_us - tr, 0.0),
        "matmul_share": mm / step_us,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--heads", nargs="+", default=["mixture", "gaussian"],
                   help="registered head names, or 'all' (logistic_mixture with 10 components, mixture with 3)")
    p.add_argument("--streams", nargs="+", type=int, default=[1, 64])
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--mode", default="sample", choices=G.MODES)
    p.add_argument("--sampler", nargs="+", default=["auto"], choices=["auto", "tensor"],
                   help="auto: as generate chooses; tensor: the head's tensor functions at every step")
    p.add_argument("--seconds", type=float, default=2.0, help="audio per stream and run for 1 stream")
    p.add_argument("--steps-many", type=int, default=4000, help="steps per run with several streams")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", default=None, help="also write the results here")
    a = p.parse_args(argv)
    if "all" in a.heads:
        a.heads = list(HEADS)

    print(f"# waveform-mdn generate benchmark: torch {torch.__version__}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f} at start, mode {a.mode}")
    print("| head | head params | streams | threads | sampler | best samples/s | median samples/s "
          "| x real time (best) | us/step (best) |")
    print("|---|---|---|---|---|---|---|---|---|")
    results = []
    for head in a.heads:
        model = make_model(head)
        head_params = sum(p.numel() for p in model.net.head.parameters())
        for n_streams in a.streams:
            steps = int(a.seconds * SR) if n_streams == 1 else a.steps_many
            for threads, sampler in ((t, s) for t in a.threads for s in a.sampler):
                runs = [run_once(model, n_streams, steps, threads, a.mode, sampler) for _ in range(a.repeats)]
                rates = [r for r, _ in runs]
                best, med = max(rates), statistics.median(rates)
                row = {"head": head, "head_params": head_params, "streams": n_streams, "threads": threads, "sampler": runs[0][1], "steps": steps,
                       "best_samples_per_s": best, "median_samples_per_s": med,
                       "realtime_factor_best": best / SR, "us_per_step_best": n_streams / best * 1e6}
                results.append(row)
                print(f"| {head} | {head_params:,} | {n_streams} | {threads} | {row['sampler']} | {best:,.0f} | {med:,.0f} | "
                      f"{best / SR:.1f} | {row['us_per_step_best']:.1f} |", flush=True)
    print()
    print("## Where the time of one step goes (1 thread, mixture head; isolated timings)")
    print("| streams | sampler | step us | 3 matmuls us | 2 activations us | rest us | matmul share |")
    print("|---|---|---|---|---|---|---|")
    parts = []
    model = make_model("mixture")
    for r in results:
        if r["head"] != "mixture" or r["threads"] != 1:
            continue
        b = breakdown(model, r["streams"], 1, r["us_per_step_best"])
        b.update(streams=r["streams"], sampler=r["sampler"])
        parts.append(b)
        print(f"| {r['streams']} | {r['sampler']} | {b['step_us']:.1f} | {b['matmuls_us']:.1f} | "
              f"{b['activations_us']:.1f} | {b['rest_us']:.1f} | {100 * b['matmul_share']:.0f}% |")
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")
    if a.json:
        Path(a.json).write_text(json.dumps({"results": results, "breakdown": parts,
                                            "torch": torch.__version__, "cpus": os.cpu_count()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
