#!/usr/bin/env python3
"""Generate the embedded TIMIT-layout demo corpus in ``data_prep/demo_corpus/``.

The corpus is synthesised English speech: the Festival speech synthesis system
reads public-domain Harvard sentences (IEEE 1969) with three free voices, and
its target phone and word timings become TIMIT-style ``.PHN`` / ``.WRD`` files.

Requirements (generation only; nothing in CI runs this script)::

    apt-get install -y --no-install-recommends festival \\
        festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts

plus this package installed (``pip install -e .``).  Usage::

    python scripts/make_demo_corpus.py            # rewrite data_prep/demo_corpus
    python scripts/make_demo_corpus.py --out DIR  # write somewhere else

The output is built in a temporary directory next to the destination and
swapped into place only after every file has been written and checked, so an
interrupted or failed run leaves the previous corpus untouched.  Runs are
deterministic: two runs give byte-identical files.  Any Festival failure (a
missing voice, a Scheme error, a missing output file) aborts with a non-zero
exit status and a message.
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from data_prep.phones import TIMIT61
from data_prep.audio_io import atomic_directory

SAMPLE_RATE = 16000

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "data_prep" / "demo_corpus"

TIMIT_PHONES = frozenset(TIMIT61)

# Festival "radio" phones that are not TIMIT symbols, and what they become.
# Every other radio phone is already a TIMIT symbol.  A leading or trailing
# "pau" (after this mapping and merging of repeats) becomes TIMIT's "h#".
PHONE_MAP = {"brth": "pau"}


@dataclasses.dataclass(frozen=True)
class Speaker:
    speaker_id: str  # TIMIT style: sex letter + 3 letters + digit
    split: str  # TRAIN or TEST
    dialect: str  # DR1..DR8
    voice: str  # Festival voice name (called as (voice_<name>))
    description: str
    utterances: tuple[str, ...]  # utterance ids, keys of SENTENCES


# ---------------------------------------------------------------------------
# Sentences: Harvard sentences (IEEE Recommended Practice for Speech Quality
# Measurements, 1969), lists 1-3, public domain.  Not TIMIT's prompts.
# As in TIMIT, an utterance id names one text: SA1/SA2 are read by every
# speaker, an SX text may be read by several speakers, an SI text by one.
# No SI/SX text is shared between the TRAIN and TEST speakers.
# ---------------------------------------------------------------------------
SENTENCES: dict[str, str] = {
    "SA1": "The birch canoe slid on the smooth planks.",  # H1.1
    "SA2": "Glue the sheet to the dark blue background.",  # H1.2
    "SI1001": "It's easy to tell the depth of a well.",  # H1.3
    "SI1002": "These days a chicken leg is a rare dish.",  # H1.4
    "SI1003": "Rice is often served in round bowls.",  # H1.5
    "SI1004": "The juice of lemons makes fine punch.",  # H1.6
    "SI1005": "The box was thrown beside the parked truck.",  # H1.7
    "SI1006": "The hogs were fed chopped corn and garbage.",  # H1.8
    "SI1007": "Four hours of steady work faced us.",  # H1.9
    "SI1008": "A large size in stockings is hard to sell.",  # H1.10
    "SI1009": "The boy was there when the sun rose.",  # H2.1
    "SX101": "A rod is used to catch pink salmon.",  # H2.2
    "SX102": "The source of the huge river is the clear spring.",  # H2.3
    "SX103": "Kick the ball straight and follow through.",  # H2.4
    "SX104": "Help the woman get back to her feet.",  # H2.5
    "SX105": "A pot of tea helps to pass the evening.",  # H2.6
    "SX106": "Smoky fires lack flame and heat.",  # H2.7
    "SX107": "The soft cushion broke the man's fall.",  # H2.8
    "SX108": "The salt breeze came across from the sea.",  # H2.9
    "SX109": "The girl at the booth sold fifty bonds.",  # H2.10
    "SX110": "The small pup gnawed a hole in the sock.",  # H3.1
    "SX111": "The fish twisted and turned on the bent hook.",  # H3.2
    "SX112": "Press the pants and sew a button on the vest.",  # H3.3
    "SX113": "The swan dive was far short of perfect.",  # H3.4
    "SX114": "The beauty of the view stunned the young boy.",  # H3.5
    "SX115": "Two blue fish swam in the tank.",  # H3.6
    "SX116": "Her purse was full of useless trash.",  # H3.7
    "SX117": "The colt reared and threw the tall rider.",  # H3.8
}


def _utts(si: range, sx: range) -> tuple[str, ...]:
    return ("SA1", "SA2", *(f"SI{i}" for i in si), *(f"SX{i}" for i in sx))


SPEAKERS: tuple[Speaker, ...] = (
    Speaker("MKAL0", "TRAIN", "DR1", "kal_diphone",
            "male, American English, Festival diphone voice kal_diphone "
            "(festvox-kallpc16k)",
            _utts(range(1001, 1004), range(101, 108))),
    Speaker("FSLT0", "TRAIN", "DR2", "cmu_us_slt_arctic_hts",
            "female, American English, Festival HTS voice cmu_us_slt_arctic_hts "
            "(festvox-us-slt-hts), 32 kHz output resampled to 16 kHz",
            _utts(range(1004, 1007), range(104, 111))),
    Speaker("MKED0", "TEST", "DR3", "ked_diphone",
            "male, American English, Festival diphone voice ked_diphone "
            "(festvox-kdlpc16k)",
            _utts(range(1007, 1010), range(111, 118))),
)


class GenerationError(RuntimeError):
    pass


# ---------------------------------------------------------------------------
# Festival
# ---------------------------------------------------------------------------
SCHEME_PRELUDE = r"""
;; Generated by scripts/make_demo_corpus.py -- do not edit.
(define (demo-synth text wavfile labfile)
  ;; Utterance does not evaluate its arguments, hence the eval.
  (let ((utt (eval (list 'Utterance 'Text text))) (fd nil))
    (utt.synth utt)
    (utt.wave.resample utt 16000)
    (utt.save.wave utt wavfile 'riff)
    (set! fd (fopen labfile "w"))
    (mapcar
     (lambda (s)
       (format fd "S\t%s\t%f\n" (item.name s) (item.feat s "end")))
     (utt.relation.items utt 'Segment))
    (mapcar
     (lambda (w)
       (format fd "W\t%s\t%f\t%f\n" (item.name w)
               (item.feat w "word_start") (item.feat w "word_end")))
     (utt.relation.items utt 'Word))
    (format fd "E\n")
    (fclose fd)))
"""


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def build_scheme(voice: str, jobs: list[tuple[str, Path, Path]]) -> str:
    lines = [SCHEME_PRELUDE, f"(voice_{voice})"]
    for text, wav, lab in jobs:
        lines.append(
            f"(demo-synth {_scheme_string(text)} "
            f"{_scheme_string(str(wav))} {_scheme_string(str(lab))})"
        )
    return "\n".join(lines) + "\n"


def run_festival(festival: str, scm: Path) -> None:
    try:
        proc = subprocess.run(
            [festival, "-b", str(scm)], capture_output=True, text=True,
            timeout=600,
        )
    except FileNotFoundError as exc:
        raise GenerationError(
            f"festival not found ({festival!r}); install it with: apt-get install "
            "festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts"
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise GenerationError(f"festival timed out on {scm}") from exc
    # Festival reports Scheme errors with "SIOD ERROR" and a non-zero status;
    # check both, since some errors print without changing the status.
    if proc.returncode != 0 or "SIOD ERROR" in proc.stdout + proc.stderr:
        raise GenerationError(
            f"festival -b {scm} failed (exit status {proc.returncode}):\n"
            f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
        )


# ---------------------------------------------------------------------------
# Labels
# ---------------------------------------------------------------------------
def _to_samples(seconds: str) -> int:
    return int(round(float(seconds) * SAMPLE_RATE))


def parse_labfile(path: Path) -> tuple[list[tuple[str, int]], list[tuple[str, int, int]]]:
    """Return Festival's segments as (phone, end_sample) and words as (word, start, end)."""
    if not path.is_file():
        raise GenerationError(f"festival did not write {path}")
    segs: list[tuple[str, int]] = []
    words: list[tuple[str, int, int]] = []
    complete = False
    for line in path.read_text().splitlines():
        parts = line.split("\t")
        if parts[0] == "S" and len(parts) == 3:
            segs.append((parts[1], _to_samples(parts[2])))
        elif parts[0] == "W" and len(parts) == 4:
            words.append((parts[1], _to_samples(parts[2]), _to_samples(parts[3])))
        elif parts[0] == "E":
            complete = True
        else:
            raise GenerationError(f"{path}: unexpected line {line!r}")
    if not complete or not segs or not words:
        raise GenerationError(f"{path}: incomplete label output from festival")
    return segs, words


def make_phn(segs: list[tuple[str, int]], n: int) -> list[tuple[int, int, str]]:
    """Contiguous TIMIT phone segments covering samples [0, n)."""
    out: list[tuple[int, int, str]] = []
    start = 0
    for i, (name, end) in enumerate(segs):
        if i == len(segs) - 1:
            end = n  # stretch or cut the last segment to the audio's end
        end = min(end, n)
        if end <= start:
            continue  # zero-length after rounding/cutting
        label = PHONE_MAP.get(name, name)
        if out and out[-1][2] == label:
            out[-1] = (out[-1][0], end, label)  # merge repeated labels
        else:
            out.append((start, end, label))
        start = end
    if not out or out[-1][1] != n:
        raise GenerationError("phone segments do not reach the end of the audio")
    if out[0][2] != "pau" or out[-1][2] != "pau" or len(out) < 3:
        raise GenerationError(f"expected leading and trailing pause, got {out}")
    out[0] = (out[0][0], out[0][1], "h#")
    out[-1] = (out[-1][0], out[-1][1], "h#")
    bad = {lab for _, _, lab in out} - TIMIT_PHONES
    if bad:
        raise GenerationError(f"phone labels outside the TIMIT set: {sorted(bad)}")
    return out


def make_wrd(words: list[tuple[str, int, int]], n: int) -> list[tuple[int, int, str]]:
    out: list[tuple[int, int, str]] = []
    for name, start, end in words:
        name = name.lower()
        if end <= start:
            # Festival gives clitics such as the "'s" of "man's" their own Word
            # item with no segments (its phones belong to the previous word).
            if name.startswith("'") and out:
                s, e, prev = out[-1]
                out[-1] = (s, e, prev + name)
                continue
            raise GenerationError(f"word {name!r} has no duration")
        start, end = min(start, n), min(end, n)
        if end <= start:
            raise GenerationError(f"word {name!r} lies beyond the audio")
        out.append((start, end, name))
    return out


def sentence_words(text: str) -> list[str]:
    """The lower-case words of a sentence, punctuation stripped."""
    return [w.strip(".,;:!?\"").lower() for w in text.split()]


def _write_lines(path: Path, rows) -> None:
    with open(path, "w", encoding="ascii", newline="\n") as f:
        for row in rows:
            f.write(" ".join(str(x) for x in row) + "\n")


# ---------------------------------------------------------------------------
# Checks (also usable on a finished corpus: --check)
# ---------------------------------------------------------------------------
def check_corpus(root: Path) -> dict[str, list[tuple[str, int]]]:
    """Validate every utterance; return {speaker: [(utt, n_samples), ...]}."""
    found: dict[str, list[tuple[str, int]]] = {}
    wavs = sorted(root.glob("*/DR*/*/*.WAV"))
    if not wavs:
        raise GenerationError(f"no .WAV files under {root}")
    for wav in wavs:
        with open(wav, "rb") as f:
            if f.read(7) != b"NIST_1A":
                raise GenerationError(f"{wav}: no NIST_1A header")
        info = sf.info(str(wav))
        if (info.format, info.subtype, info.samplerate, info.channels) != (
            "NIST", "PCM_16", SAMPLE_RATE, 1):
            raise GenerationError(f"{wav}: unexpected format {info}")
        data, _ = sf.read(str(wav), dtype="int16")
        n = len(data)
        rms = float(np.sqrt(np.mean(data.astype(np.float64) ** 2)))
        if rms < 300:  # int16 units; real speech here is in the thousands
            raise GenerationError(f"{wav}: audio nearly silent (RMS {rms:.1f})")
        phn = [l.split() for l in wav.with_suffix(".PHN").read_text().splitlines()]
        pos = 0
        for s, e, lab in phn:
            if int(s) != pos or int(e) <= int(s) or lab not in TIMIT_PHONES:
                raise GenerationError(f"{wav.with_suffix('.PHN')}: bad segment {s} {e} {lab}")
            pos = int(e)
        if pos != n or phn[0][2] != "h#" or phn[-1][2] != "h#":
            raise GenerationError(f"{wav.with_suffix('.PHN')}: does not cover 0..{n}")
        for l in wav.with_suffix(".WRD").read_text().splitlines():
            s, e, w = l.split()
            if not (0 <= int(s) < int(e) <= n) or w != w.lower():
                raise GenerationError(f"{wav.with_suffix('.WRD')}: bad word line {l!r}")
        txt = wav.with_suffix(".TXT").read_text()
        if not txt.startswith(f"0 {n} ") or not txt.endswith("\n"):
            raise GenerationError(f"{wav.with_suffix('.TXT')}: bad header")
        found.setdefault(wav.parent.name, []).append((wav.stem, n))
    return found


# ---------------------------------------------------------------------------
# NOTICE and README
# ---------------------------------------------------------------------------
# NOTICE is maintained by hand in the shipped corpus (licences and provenance do not
# depend on a run) and copied into every generated corpus.
NOTICE = DEFAULT_OUT / "NOTICE"


def readme_text(stats: dict[str, list[tuple[str, int]]], phones: set[str]) -> str:
    rows = []
    total_n = total_utts = 0
    for spk in SPEAKERS:
        utts = stats[spk.speaker_id]
        secs = [n / SAMPLE_RATE for _, n in utts]
        total_n += sum(n for _, n in utts)
        total_utts += len(utts)
        rows.append(
            f"| {spk.split}/{spk.dialect}/{spk.speaker_id} | {spk.voice} | "
            f"{'female' if spk.speaker_id[0] == 'F' else 'male'} | {len(utts)} | "
            f"{sum(secs):.1f} s | {min(secs):.2f}-{max(secs):.2f} s |"
        )
    table = "\n".join(rows)
    return f"""\
# Demo corpus (synthesised speech, TIMIT layout)

A tiny stand-in for TIMIT so that the data preparation, training and
evaluation code can be exercised without the licensed corpus.  The speech was
synthesised with Festival from public-domain Harvard sentences; see `NOTICE`
for the voices' licences, the phone mapping and the provenance of the labels.
Regenerate with `python scripts/make_demo_corpus.py` (needs Festival and the
three voices; see the script's docstring).

Layout, as in the LDC distribution (upper case):

    TRAIN/DR<n>/<SPEAKER>/<UTT>.{{WAV,PHN,WRD,TXT}}
    TEST/DR<n>/<SPEAKER>/<UTT>.{{WAV,PHN,WRD,TXT}}

| speaker | Festival voice | sex | utterances | total | per utterance |
|---|---|---|---|---|---|
{table}

Total: {len(SPEAKERS)} speakers, {total_utts} utterances, {total_n / SAMPLE_RATE:.1f} s
({total_n} samples).

Each speaker has 12 utterances named as in TIMIT: SA1 and SA2 (the same two
sentences for every speaker), 3 SI and 7 SX sentences.  As in TIMIT, an
utterance id names one text (SX104-SX107 are read by both training speakers),
and no SI/SX text is shared between TRAIN and TEST.

- `.WAV`: NIST SPHERE (`NIST_1A` header), 16 kHz, mono, 16-bit PCM.
- `.PHN`: `start end phone` in samples, end exclusive, contiguous from 0 to
  the number of samples; TIMIT 61-symbol labels.  Occurring labels:
  {" ".join(sorted(phones))}.
- `.WRD`: `start end word` in samples, lower case.
- `.TXT`: `0 <n_samples> <sentence>`.

Labels are Festival's target timings (within a median 7-19 ms of the acoustic
transitions), not hand alignments; there are no stop closures (bcl, dcl, ...),
so the 39-phone folding loses nothing here that it keeps on TIMIT.
"""


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------
def synthesise_speaker(spk: Speaker, festival: str, scratch: Path, stage: Path) -> set[str]:
    """Festival reads the speaker's sentences; their audio and labels are checked and
    written under ``stage`` in the TIMIT layout. Returns the phone labels used."""
    jobs = []
    for utt in spk.utterances:
        base = scratch / f"{spk.speaker_id}_{utt}"
        jobs.append((SENTENCES[utt], base.with_suffix(".riff.wav"), base.with_suffix(".lab")))
    scm = scratch / f"{spk.speaker_id}.scm"
    scm.write_text(build_scheme(spk.voice, jobs))
    t1 = time.monotonic()
    run_festival(festival, scm)
    print(f"{spk.speaker_id}: festival ({spk.voice}) {time.monotonic() - t1:.1f} s", file=sys.stderr)

    phones: set[str] = set()
    spk_dir = stage / spk.split / spk.dialect / spk.speaker_id
    spk_dir.mkdir(parents=True)
    for utt, (text, riff, lab) in zip(spk.utterances, jobs):
        if not riff.is_file():
            raise GenerationError(f"festival did not write {riff}")
        data, rate = sf.read(str(riff), dtype="int16")
        if rate != SAMPLE_RATE or data.ndim != 1 or len(data) == 0:
            raise GenerationError(
                f"{riff}: expected mono {SAMPLE_RATE} Hz audio, got {rate} Hz, shape {data.shape}")
        n = len(data)
        segs, words = parse_labfile(lab)
        try:
            phn = make_phn(segs, n)
            wrd = make_wrd(words, n)
        except GenerationError as exc:
            raise GenerationError(f"{spk.speaker_id}/{utt}: {exc}") from exc
        expected = sentence_words(text)
        if [w for _, _, w in wrd] != expected:
            raise GenerationError(
                f"{spk.speaker_id}/{utt}: festival's words "
                f"{[w for _, _, w in wrd]} differ from the text {expected}")
        phones.update(lab for _, _, lab in phn)
        dest = spk_dir / utt
        sf.write(str(dest.with_suffix(".WAV")), data, SAMPLE_RATE, format="NIST", subtype="PCM_16")
        _write_lines(dest.with_suffix(".PHN"), phn)
        _write_lines(dest.with_suffix(".WRD"), wrd)
        _write_lines(dest.with_suffix(".TXT"), [(0, n, text)])
    return phones


def generate(out: Path, festival: str) -> None:
    """Build the corpus in a hidden directory beside ``out``; it replaces ``out`` only
    when every file is written and checked."""
    t0 = time.monotonic()
    out = out.resolve()
    notice = NOTICE.read_bytes()  # before ``out`` (which may hold it) is replaced
    with atomic_directory(out) as stage, \
            tempfile.TemporaryDirectory(prefix="demo_corpus_festival-") as scratch:
        phones: set[str] = set()
        for spk in SPEAKERS:
            phones |= synthesise_speaker(spk, festival, Path(scratch), stage)
        stats = check_corpus(stage)
        for spk in SPEAKERS:
            if len(stats.get(spk.speaker_id, [])) != len(spk.utterances):
                raise GenerationError(f"{spk.speaker_id}: wrong utterance count")
        (stage / "NOTICE").write_bytes(notice)
        (stage / "README.md").write_text(readme_text(stats, phones), encoding="ascii")
    total = sum(n for utts in stats.values() for _, n in utts)
    print(f"wrote {out}: {sum(len(u) for u in stats.values())} utterances, "
          f"{total / SAMPLE_RATE:.1f} s of audio, in {time.monotonic() - t0:.1f} s",
          file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT,
                    help=f"output directory (default: {DEFAULT_OUT})")
    ap.add_argument("--festival", default="festival",
                    help="festival executable (default: festival on PATH)")
    ap.add_argument("--check", action="store_true",
                    help="only validate an existing corpus at --out")
    args = ap.parse_args(argv)
    try:
        if args.check:
            stats = check_corpus(args.out)
            for spk, utts in sorted(stats.items()):
                print(f"{spk}: {len(utts)} utterances, "
                      f"{sum(n for _, n in utts) / SAMPLE_RATE:.1f} s")
        else:
            generate(args.out, args.festival)
    except GenerationError as exc:
        print(f"make_demo_corpus: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
