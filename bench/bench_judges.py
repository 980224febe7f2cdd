"""CPU cost of the judges (DNSMOS, PocketSphinx) on the shared TIMIT sample, one thread.

    python bench/bench_judges.py                  # 10 utterances of dr1-mcpm0, 6 for measure_files
    python bench/bench_judges.py --speaker dr2-faem0 --files 10 --measure-files 6

Goals (issue 18): at most 2 s of CPU per 3 s of audio for both judges together, after a
one-time load of at most 5 s; ``measure_files`` with judges at most 3 s per 3-second file
once warm. CPU seconds are process time (one onnxruntime intra-op thread, OMP 1 thread).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("WAVEFORM_MDN_SHARED", REPO.parent / "shared")) / "corpora" / "timit_nltk_sample"


def cpu_and_wall(fn):
    c, w = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.process_time() - c, time.perf_counter() - w


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--speaker", default="dr1-mcpm0")
    ap.add_argument("--files", type=int, default=10)
    ap.add_argument("--measure-files", type=int, default=6)
    a = ap.parse_args()
    wavs = sorted((SHARED / a.speaker).glob("*.wav"))[: a.files]
    if not wavs:
        raise SystemExit(f"no WAVs under {SHARED / a.speaker}")

    import numpy as np
    import soundfile as sf

    from waveform_mdn.audio_metrics import judges as J, measure_files

    for name, load in (("DNSMOS", J.dnsmos_model), ("PocketSphinx", J.phone_recogniser)):
        model, c, w = cpu_and_wall(load)
        print(f"{name:12s} load: {c:.2f} s CPU, {w:.2f} s wall" + ("" if model is not None else " (FAILED)"))

    audio = [J.to_judge_rate(*sf.read(wav)) for wav in wavs]
    phones = [J.intended_phones_39(J.phones_beside(wav)) for wav in wavs]
    seconds = sum(x.size for x in audio) / J.JUDGE_SR
    per3 = 3.0 / seconds
    _, c_dns, _ = cpu_and_wall(lambda: [J.dnsmos_scores(x) for x in audio])
    hyps, c_ps, _ = cpu_and_wall(lambda: [J.recognise_phones(x) for x in audio])
    pers = [J.phone_error_rate(h, p) for h, p in zip(hyps, phones)]
    scores = [J.dnsmos_scores(x) for x in audio]
    print(f"{len(wavs)} files, {seconds:.1f} s of audio ({a.speaker})")
    print(f"DNSMOS       {c_dns * per3:.2f} s CPU per 3 s of audio")
    print(f"PocketSphinx {c_ps * per3:.2f} s CPU per 3 s of audio")
    print(f"both         {(c_dns + c_ps) * per3:.2f} s CPU per 3 s of audio (goal <= 2)")
    mean = {k: float(np.mean([s[k] for s in scores])) for k in J.DNSMOS_KEYS}
    print("means: " + ", ".join(f"{k} {v:.2f}" for k, v in mean.items()) + f", phone_error_rate {np.mean(pers):.2f}")

    few = wavs[: a.measure_files]
    few_s = sum(sf.info(w).duration for w in few)
    for judges in (False, True) if few else ():
        measure_files(few[0], judges=judges)  # warm (numba's pYIN compile, models)
        _, c, w = cpu_and_wall(lambda: [measure_files(f, f, judges=judges) for f in few])
        print(f"measure_files x{len(few)} with reference, judges={judges}: {w:.2f} s wall, {c:.2f} s CPU "
              f"({w * 3.0 / few_s:.2f} s wall per 3 s file)")


if __name__ == "__main__":
    main()
