"""Scale: start-up, time to the first batch, throughput and memory of ``waveform-mdn fit`` on
a TIMIT-sized corpus and on one 10x larger, side by side.

Each corpus is built by ``bench_prepare.build_corpus`` (the demo utterances tiled over many
speakers: 6,300 utterances and 5.4 h, or 63,000 and 54 h) and prepared for real by
``waveform-mdn prepare`` in a child process (timed). Both are cached under ``--work``
(default: a temporary directory, removed at the end): a second run reuses them and
reports the prepare time measured when they were made.

Then ``waveform-mdn fit`` runs in a child with ``recipes/timit/conf/mdn_full_ddp.yaml``,
made to fit a CPU: 1 device, 32-bit, no validation, no audio, ``--batches`` batches of
``data.batch_size`` (1,024) in epoch 0 and a few in epoch 1. A callback stamps the times
and reads each process's peak RSS (``ru_maxrss``) and, at the end, its resident memory
split into anonymous (its own) and file-backed pages (the memory-mapped waveform, kept
once in the page cache for all processes on the machine), and the file-backed PSS (each
page split among the processes that map it). ``--ddp N`` adds a run of N DDP processes
on the CPU on the first corpus: the memory per rank, and the waveform's pages shared.

    .venv/bin/python bench/bench_scale.py --work /tmp/scale      # both corpora, ~5 min
    .venv/bin/python bench/bench_scale.py --scales 1 --batches 200
    .venv/bin/python bench/bench_scale.py --work /tmp/scale --before 71e7c2c --ddp 2

``--before COMMIT`` also runs the fit with that commit's code (``git archive`` into the
work directory) on the first corpus, for a before/after comparison.

Goals on the TIMIT-sized corpus: peak RSS <= 2 GB, first batch <= 2 s after setup and
after every epoch start.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl

from bench_prepare import TIMIT_HOURS, TIMIT_UTTERANCES, build_corpus, run_measured

ROOT = Path(__file__).resolve().parents[1]

CONFIG = ROOT / "recipes/timit/conf/mdn_full_ddp.yaml"
GOAL_RSS = 2 << 30
GOAL_FIRST_BATCH = 2.0
EPOCH1_BATCHES = 20


def _memory_status() -> dict[str, int]:
    """This process's resident memory by kind, in bytes (Linux /proc; empty elsewhere): peak
    and current RSS, anonymous and file-backed RSS, and PSS (each shared page counted as
    1 / the number of processes that map it)."""
    out = {}
    for name, keys in (("status", ("VmHWM", "VmRSS", "RssAnon", "RssFile")),
                       ("smaps_rollup", ("Pss", "Pss_Anon", "Pss_File"))):
        try:
            lines = Path(f"/proc/self/{name}").read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            key, _, value = line.partition(":")
            if key in keys:
                out[key] = int(value.split()[0]) * 1024
    return out


class ScaleStamps(pl.Callback):
    """Wall-clock stamps of setup, epoch starts, first batches and batch ends; written to
    ``out`` (JSON) with the memory status when training ends."""

    def __init__(self, out: str):
        self.out = out
        self.stamps: dict[str, object] = {"epoch_start": {}, "first_batch": {}, "batch_end": []}

    def setup(self, trainer, pl_module, stage):
        self.stamps["setup_done"] = time.time()  # called right after the datamodule's setup

    def on_train_epoch_start(self, trainer, pl_module):
        self.stamps["epoch_start"][trainer.current_epoch] = time.time()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 0:
            self.stamps["first_batch"][trainer.current_epoch] = time.time()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.current_epoch == 0:
            self.stamps["batch_end"].append(time.time())

    def on_train_end(self, trainer, pl_module):
        self.stamps["memory"] = _memory_status()  # read by every rank at about the same time
        self.stamps["ru_maxrss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        self.stamps["world_size"] = trainer.world_size
        Path(f"{self.out}.{trainer.global_rank}").write_text(json.dumps(self.stamps))


def corpus(work: Path, scale: int) -> dict:
    """The prepared corpus of ``scale`` x TIMIT's size under ``work`` (made if missing)."""
    d = work / f"x{scale}"
    prepared, record = d / "prepared", d / "prepare.json"
    if (prepared / "meta.json").exists() and record.exists():
        return {**json.loads(record.read_text()), "cached": True}
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    t0 = time.perf_counter()
    info = build_corpus(d / "corpus", TIMIT_UTTERANCES * scale, TIMIT_HOURS * scale)
    print(f"x{scale}: built {info['utterances']:,} utterances, {info['hours']:.1f} h in "
          f"{time.perf_counter() - t0:.0f} s; preparing", flush=True)
    wall, rss, rc, log = run_measured(["prepare", str(d / "corpus"), str(prepared), "--quiet"])
    if rc != 0:
        raise SystemExit(f"prepare failed (exit {rc}):\n{log[-3000:]}")
    meta = json.loads((prepared / "meta.json").read_text())
    rec = {"path": str(prepared), "prepare_s": wall, "prepare_rss": rss, "hours": info["hours"],
           "utterances": info["utterances"], "examples": meta["summary"]["train"]["examples"],
           "wave_bytes": (prepared / "wave.npy").stat().st_size}
    record.write_text(json.dumps(rec))
    shutil.rmtree(d / "corpus")  # the prepared arrays are all that is needed from here on
    return {**rec, "cached": False}


def fit(data: str, work: Path, batches: int, threads: int, code: Path = ROOT, devices: int = 1) -> dict:
    """``waveform-mdn fit`` in a child (``devices`` > 1: DDP ranks on the CPU); rank 0's
    stamps, every rank's memory and the launch time."""
    out = work / "stamps.json"
    for old in work.glob("stamps.json.*"):
        old.unlink()
    args = [
        "fit", "--config", str(code / "recipes/timit/conf/mdn_full_ddp.yaml"), "--data.path", data,
        "--trainer.accelerator", "cpu", "--trainer.devices", str(devices),
        "--trainer.strategy", "ddp" if devices > 1 else "auto",
        "--trainer.precision", "32-true", "--trainer.max_epochs", "2",
        "--trainer.limit_train_batches", str(batches), "--trainer.max_steps", str(batches + EPOCH1_BATCHES),
        "--trainer.limit_val_batches", "0", "--trainer.num_sanity_val_steps", "0",
        "--trainer.enable_progress_bar", "false", "--trainer.logger.init_args.save_dir", str(work / "runs"),
        "--audio.every_n_epochs", "0", "--num_threads", str(threads),
        "--trainer.callbacks+=bench_scale.ScaleStamps", "--trainer.callbacks.out", str(out),
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(code), str(ROOT / "bench")])}
    launch = time.time()
    p = subprocess.Popen([sys.executable, "-m", "waveform_mdn.train", *args], cwd=code, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    log = p.stdout.read()
    rc = p.wait()
    ranks = [json.loads(Path(f"{out}.{r}").read_text()) for r in range(devices) if Path(f"{out}.{r}").exists()]
    if rc != 0 or len(ranks) != devices:
        raise SystemExit(f"fit failed:\n{log.decode()[-3000:]}")
    shutil.rmtree(work / "runs", ignore_errors=True)
    return {**ranks[0], "launch": launch, "ranks": [r["memory"] | {"ru_maxrss": r["ru_maxrss"]} for r in ranks]}


def summarise(c: dict, s: dict, batch_size: int) -> dict:
    """The table's values; memory: the largest over the ranks."""
    ends = s["batch_end"]
    start = {int(k): v for k, v in s["epoch_start"].items()}
    first = {int(k): v for k, v in s["first_batch"].items()}

    def most(key):
        return max((r.get(key) or 0) for r in s["ranks"])

    return {
        "devices": s["world_size"],
        "utterances": c["utterances"], "hours": c["hours"], "examples": c["examples"],
        "prepare_s": c["prepare_s"], "prepare_cached": c["cached"],
        "startup_s": s["setup_done"] - s["launch"],
        "setup_to_first_batch_s": first[0] - s["setup_done"],
        "first_batch_epoch0_s": first[0] - start[0], "first_batch_epoch1_s": first[1] - start[1],
        "batches": len(ends),
        "examples_per_s": batch_size * s["world_size"] * (len(ends) - 1) / (ends[-1] - ends[0]),
        "peak_rss": most("ru_maxrss"), "rss_anon_end": most("RssAnon"), "rss_file_end": most("RssFile"),
        "pss_file_end": most("Pss_File"), "wave_bytes": c["wave_bytes"],
    }


ROWS = [
    ("processes (CPU devices)", lambda r: f"{r['devices']}"),
    ("utterances", lambda r: f"{r['utterances']:,}"),
    ("audio", lambda r: f"{r['hours']:.1f} h"),
    ("training examples", lambda r: f"{r['examples'] / 1e6:,.0f} M"),
    ("int16 waveform (wave.npy)", lambda r: f"{r['wave_bytes'] / 2**30:.2f} GB"),
    ("prepare", lambda r: f"{r['prepare_s']:.1f} s" + (" (cached)" if r["prepare_cached"] else "")),
    ("fit start-up (launch to setup done)", lambda r: f"{r['startup_s']:.1f} s"),
    ("setup done to first batch", lambda r: f"{r['setup_to_first_batch_s']:.2f} s"),
    ("first batch, epoch 0 (from epoch start)", lambda r: f"{r['first_batch_epoch0_s']:.3f} s"),
    ("first batch, epoch 1 (from epoch start)", lambda r: f"{r['first_batch_epoch1_s']:.3f} s"),
    ("examples/s (all processes), epoch 0", lambda r: f"{r['examples_per_s']:,.0f} ({r['batches']:,} batches)"),
    ("peak RSS per process (ru_maxrss)", lambda r: f"{r['peak_rss'] / 2**30:.2f} GB"),
    ("  at the end: anonymous", lambda r: f"{r['rss_anon_end'] / 2**30:.2f} GB"),
    ("  at the end: file-backed (page cache)", lambda r: f"{r['rss_file_end'] / 2**30:.2f} GB"),
    ("  file-backed PSS (shared pages split)", lambda r: f"{r['pss_file_end'] / 2**30:.2f} GB"),
]


def table(results: dict[str, dict]) -> str:
    names = list(results)
    width = max(len(n) for n, _ in ROWS) + 2
    lines = [f"| {'':<{width}}| " + " | ".join(f"{n:>24}" for n in names) + " |",
             "|" + "-" * (width + 1) + "|" + "|".join("-" * 25 + ":" for _ in names) + "|"]
    for label, fmt in ROWS:
        lines.append(f"| {label:<{width}}| " + " | ".join(f"{fmt(results[n]):>24}" for n in names) + " |")
    return "\n".join(lines)


def before_code(work: Path, commit: str) -> Path:
    """That commit's code (waveform_mdn, data_prep, recipes), extracted by ``git archive``."""
    dest = work / f"code_{commit}"
    if not dest.exists():
        dest.mkdir(parents=True)
        archive = subprocess.run(["git", "archive", commit, "waveform_mdn", "data_prep", "recipes"], cwd=ROOT,
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", help="where the corpora are built and cached (default: a temporary directory)")
    ap.add_argument("--scales", type=int, nargs="+", default=[1, 10], help="corpus sizes in TIMITs (default 1 10)")
    ap.add_argument("--batches", type=int, default=1000, help="timed batches of epoch 0 (default 1000)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the fit (default 1)")
    ap.add_argument("--before", metavar="COMMIT", help="also run the fit with this commit's code on the first corpus")
    ap.add_argument("--before-batches", type=int, default=200, help="batches of epoch 0 for --before (default 200)")
    ap.add_argument("--ddp", type=int, default=0, metavar="N", help="also a run of N DDP processes on the first corpus")
    ap.add_argument("--ddp-batches", type=int, default=200, help="batches of epoch 0 for --ddp (default 200)")
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args(argv)
    work = Path(a.work or tempfile.mkdtemp(prefix="bench_scale_"))
    work.mkdir(parents=True, exist_ok=True)
    batch_size = 1024  # data.batch_size of the config
    results: dict[str, dict] = {}
    try:
        corpora = {scale: corpus(work, scale) for scale in a.scales}
        if a.before:
            c = corpora[a.scales[0]]
            print(f"fit with {a.before}'s code on x{a.scales[0]}", flush=True)
            s = fit(c["path"], work, a.before_batches, a.threads, code=before_code(work, a.before))
            results[f"x{a.scales[0]} before ({a.before})"] = summarise(c, s, batch_size)
        for scale, c in corpora.items():
            print(f"fit on x{scale}", flush=True)
            results[f"x{scale}"] = summarise(c, fit(c["path"], work, a.batches, a.threads), batch_size)
        if a.ddp > 1:
            c = corpora[a.scales[0]]
            print(f"fit on x{a.scales[0]}, {a.ddp} DDP processes", flush=True)
            s = fit(c["path"], work, a.ddp_batches, a.threads, devices=a.ddp)
            results[f"x{a.scales[0]}, DDP x{a.ddp}"] = summarise(c, s, batch_size)
    finally:
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print(table(results))
    print(f"\n{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; torch threads {a.threads}")
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))
    main_row = results[f"x{a.scales[0]}"]
    ok = (main_row["peak_rss"] <= GOAL_RSS and main_row["setup_to_first_batch_s"] <= GOAL_FIRST_BATCH
          and main_row["first_batch_epoch1_s"] <= GOAL_FIRST_BATCH)
    print(f"goals on x{a.scales[0]} (peak RSS <= 2 GB, first batch <= {GOAL_FIRST_BATCH:.0f} s after setup "
          f"and at epoch 1): {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
