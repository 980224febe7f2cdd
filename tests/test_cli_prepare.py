"""``waveform-mdn prepare`` / ``corpus-info``: options reach ``prepare``, bad input exits
with code 2 and a message naming the file (and line), ``--skip-bad`` lists what it skipped."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from waveform_mdn.cli import main

ENTRY = Path(sys.executable).parent / "waveform-mdn"


def _run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_bad_input_exit_code_2(corpora, tmp_path, capsys, bad_case):
    d = corpora.bad_corpus(tmp_path, bad_case)
    extra = ["--no-resample"] if bad_case == "wrong_rate" else []
    rc, out, err = _run(capsys, "prepare", d, tmp_path / "out", "--quiet", *extra)
    assert rc == 2
    assert err.startswith("waveform-mdn prepare: error: ") and err.count("\n") == 1 and re.search(corpora.BAD_CASES[bad_case][1], err), err
    assert "Traceback" not in err and not (tmp_path / "out").exists()
    rc, out, err = _run(capsys, "prepare", d, tmp_path / "out", "--quiet", "--skip-bad", "--split", "none", *extra)
    assert rc == 0, err
    assert "skipped 1:" in out and re.search(corpora.BAD_CASES[bad_case][1], out)
    assert (tmp_path / "out" / "meta.json").is_file()


@pytest.mark.parametrize("args,pattern", [
    (["--speakers", "NOBODY"], r"demo_corpus: the selection matched no utterances"),
    (["--phone-filter", "xx"], r"phone filter \['xx'\]"),
    (["--phone-map", "brth"], r"--phone-map: phone mapping 'brth' is not of the form LABEL=SYMBOL"),
    (["--phone-map", "brth=xyz"], r"phone mapping brth=xyz: 'xyz' is not a symbol of timit61"),
    (["--valid", "12"], r"speaker FSLT0 has 12 utterance\(s\)"),
    (["--valid", "-1"], r"must not be negative"),
    (["--window", "0"], r"window must be at least 1"),
    (["--max-utterances", "-3"], r"max_utterances must not be negative"),
])
def test_bad_options_exit_code_2(tmp_path, capsys, args, pattern):
    rc, out, err = _run(capsys, "prepare", "demo", tmp_path / "out", "--quiet", *args)
    assert rc == 2 and re.search(pattern, err), err
    assert not (tmp_path / "out").exists()


def test_missing_corpus_and_existing_out(tmp_path, capsys):
    rc, _, err = _run(capsys, "prepare", tmp_path / "nope", tmp_path / "out", "--quiet")
    assert rc == 2 and "nope: corpus directory does not exist" in err
    (tmp_path / "out").mkdir()
    rc, _, err = _run(capsys, "prepare", "demo", tmp_path / "out", "--quiet")
    assert rc == 2 and "out: already exists (pass --overwrite to replace it)" in err


def test_prepare_options_reach_meta(tmp_path, capsys):
    out = tmp_path / "out"
    rc, stdout, err = _run(capsys, "prepare", "demo", out, "--quiet", "--speakers", "MKAL0,FSLT0",
                           "--utt-types", "SX,SI", "--valid", "2", "--seed", "5", "--phone-set", "timit39",
                           "--window", "160", "--pad", "zero")
    assert rc == 0, err
    meta = json.loads((out / "meta.json").read_text())
    assert meta["phone_set"] == "timit39" and meta["window"] == 160 and meta["pad"] == "zero"
    assert meta["split"]["seed"] == 5 and meta["split"]["valid"] == 2 and len(meta["split"]["valid_sequences"]) == 4
    assert meta["selection"]["speakers"] == ["MKAL0", "FSLT0"] and meta["selection"]["utt_types"] == ["SX", "SI"]
    assert meta["summary"]["train"]["utterances"] == 16 and meta["summary"]["valid"]["speakers"] == 2
    assert "prepared" in stdout and "timit39, window 160, pad zero" in stdout and "train" in stdout
    # the same again needs --overwrite, and gives the same split
    rc, _, err = _run(capsys, "prepare", "demo", out, "--quiet", "--speakers", "MKAL0,FSLT0",
                      "--utt-types", "SX,SI", "--valid", "2", "--seed", "5", "--overwrite")
    assert rc == 0, err
    assert json.loads((out / "meta.json").read_text())["split"]["valid_sequences"] == meta["split"]["valid_sequences"]


def test_official_split_and_phone_filter(tmp_path, capsys):
    rc, stdout, err = _run(capsys, "prepare", "demo", tmp_path / "o", "--quiet", "--split", "official",
                           "--phone-filter", "aa", "--pad", "zero")
    assert rc == 0, err
    seqs = json.loads((tmp_path / "o" / "sequences.json").read_text())
    assert len(seqs) == 29  # the /aa/ segments of the demo corpus
    assert {s["split"] for s in seqs if s["speaker"] == "MKED0"} == {"valid"}
    assert {s["split"] for s in seqs if s["speaker"] != "MKED0"} == {"train"}


def test_corpus_info_on_corpus(capsys, demo_corpus):
    rc, out, err = _run(capsys, "corpus-info", "demo")
    assert rc == 0, err
    assert "layout: timit x36" in out
    assert re.search(r"test\s+12\s+1\s+0\.0100\s+16000 Hz x12", out)
    assert re.search(r"train\s+24\s+2\s+0\.0182\s+16000 Hz x24", out)
    assert "utterance types: SA 6, SI 9, SX 21" in out and "speakers by sex: F 1, M 2" in out
    assert "problem" not in out


def test_corpus_info_lists_problems(corpora, tmp_path, capsys):
    d = tmp_path / "c"
    d.mkdir()
    corpora.write_good(d)
    (d / "broken.wav").write_bytes(b"garbage" * 10)
    (d / "broken.phn").write_text("0 10 h#\n")
    corpora.write_audio(d / "nolab.wav", corpora.signal(500), fmt="WAV")
    rc, out, err = _run(capsys, "corpus-info", d)
    assert rc == 0, err
    assert "layout: plain x3" in out and re.search(r"all\s+2\s", out)  # good.wav and nolab.wav
    assert re.search(r"problem: .*nolab\.wav: no phone label file", out)
    assert re.search(r"problem: .*broken\.wav: unreadable audio", out)


def test_corpus_info_on_timit_sample(capsys, timit_sample):
    rc, out, err = _run(capsys, "corpus-info", timit_sample)
    assert rc == 0 and "layout: nltk x120" in out and re.search(r"all\s+120\s+12\s", out)


def test_corpus_info_on_prepared(capsys, demo_prepared_all):
    rc, out, err = _run(capsys, "corpus-info", demo_prepared_all)
    assert rc == 0, err
    assert f"prepared dataset {demo_prepared_all}" in out
    assert re.search(r"train\s+24\s+24\s+2\s", out) and re.search(r"valid\s+12\s+12\s+1\s", out)
    assert "phone set timit61 (61 phones), window 240, pad skip" in out
    assert "normalisation (train): mean" in out and "demo_corpus" in out
    assert "prepare the data again" not in out


def test_corpus_info_on_a_dataset_of_another_format(capsys, demo_prepared, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(demo_prepared, old)
    meta = json.loads((old / "meta.json").read_text())
    (old / "meta.json").write_text(json.dumps({**meta, "format_version": 1}))
    rc, out, err = _run(capsys, "corpus-info", old)
    assert rc == 0, err
    assert out.strip().endswith("format_version 1: this waveform-mdn reads version 2; prepare the data again to use it")


def test_corpus_info_errors(tmp_path, capsys):
    rc, _, err = _run(capsys, "corpus-info", tmp_path / "nope")
    assert rc == 2 and "nope: corpus directory does not exist" in err
    rc, _, err = _run(capsys, "corpus-info", tmp_path)
    assert rc == 2 and "neither a prepared dataset (meta.json) nor a corpus" in err


@pytest.mark.skipif(not ENTRY.exists(), reason="waveform-mdn entry point not installed")
def test_entry_point_subprocess(corpora, tmp_path):
    """The installed command: success, then exit code 2 with the message on stderr."""
    out = tmp_path / "out"
    p = subprocess.run([str(ENTRY), "prepare", "demo", str(out), "--speakers", "MKAL0", "--quiet"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert (out / "meta.json").is_file() and "train" in p.stdout
    d = corpora.bad_corpus(tmp_path, "overlap")
    p = subprocess.run([str(ENTRY), "prepare", str(d), str(tmp_path / "o2"), "--quiet"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and re.search(corpora.BAD_CASES["overlap"][1], p.stderr) and "Traceback" not in p.stderr


def test_prepare_of_a_16k_corpus_never_imports_torch(tmp_path):
    """The command as run (``python -m waveform_mdn.cli``, import times on): ``prepare``
    starts and runs without torch (about a second and 600 MB more); only resampling needs it."""
    res = subprocess.run([sys.executable, "-X", "importtime", "-m", "waveform_mdn.cli", "prepare", "demo",
                          str(tmp_path / "out"), "--quiet", "--speakers", "MKAL0"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in res.stderr.splitlines() if line.startswith("import time:")}
    assert {"numpy", "soundfile", "data_prep.write"} <= imported  # the listing works
    assert not {m for m in imported if m.split(".")[0] in ("torch", "torchaudio")}
