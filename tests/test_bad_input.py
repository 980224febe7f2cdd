"""Bad input: each gets an error naming the file (and line), or with ``skip_bad`` is skipped
and listed in meta.json's ``skipped`` while the good utterances are prepared."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from data_prep.audio import AudioError
from data_prep.corpus import CorpusError
from data_prep.errors import InputError
from data_prep.prepare import Selection, SplitRule, prepare


def _kw(case):
    return {"resample": case != "wrong_rate", "progress": False}


def test_bad_input_error_names_file(corpora, tmp_path, bad_case):
    d = corpora.bad_corpus(tmp_path, bad_case)
    with pytest.raises((AudioError, CorpusError, InputError)) as info:
        prepare(d, tmp_path / "out", **_kw(bad_case))
    msg = str(info.value)
    assert re.search(corpora.BAD_CASES[bad_case][1], msg), msg
    assert str(d) in msg  # the full path of the file
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["corpus"]


def test_bad_input_skipped_and_listed(corpora, tmp_path, bad_case):
    d = corpora.bad_corpus(tmp_path, bad_case)
    meta = prepare(d, tmp_path / "out", skip_bad=True, split=SplitRule(mode="none"), **_kw(bad_case))
    assert len(meta["skipped"]) == 1 and re.search(corpora.BAD_CASES[bad_case][1], meta["skipped"][0])
    meta2, seqs, wave, *_ = corpora.read_prepared(tmp_path / "out")
    assert meta2["skipped"] == meta["skipped"]
    assert [s["id"] for s in seqs] == ["good"] and len(wave) == 1000


def test_everything_bad_is_an_error_even_with_skip_bad(corpora, tmp_path):
    d = tmp_path / "corpus"
    d.mkdir()
    corpora.BAD_CASES["overlap"][0](d)
    with pytest.raises(InputError, match=r"corpus: no usable sequences in the selection \(1 skipped\)"):
        prepare(d, tmp_path / "out", skip_bad=True, split=SplitRule(mode="none"), progress=False)
    assert not (tmp_path / "out").exists()


def test_empty_selection_and_empty_corpus(corpora, tmp_path):
    d = tmp_path / "corpus"
    d.mkdir()
    with pytest.raises(InputError, match=r"corpus: no audio files found"):
        prepare(d, tmp_path / "out", progress=False)
    corpora.write_good(d)
    with pytest.raises(InputError, match=r"corpus: the selection matched no utterances .*\"dialects\": \[\"DR9\"\]"):
        prepare(d, tmp_path / "out", selection=Selection(dialects=["DR9"]), skip_bad=True, progress=False)
    with pytest.raises(InputError, match=r"corpus: the selection matched no utterances"):
        prepare(d, tmp_path / "out", selection=Selection(max_utterances=0), progress=False)


def test_short_sequence_ok_with_zero_pad(corpora, tmp_path):
    d = corpora.bad_corpus(tmp_path, "too_short")
    meta = prepare(d, tmp_path / "out", pad="zero", progress=False, split=None)
    assert meta["skipped"] == [] and meta["summary"]["train"]["sequences"] + meta["summary"]["valid"]["sequences"] == 2


def test_phone_map_makes_unknown_label_usable(corpora, tmp_path):
    d = corpora.bad_corpus(tmp_path, "unknown_phone")
    meta = prepare(d, tmp_path / "out", phone_map={"brth": "pau"}, progress=False, split=None)
    assert meta["skipped"] == [] and meta["phone_map"] == {"brth": "pau"}


def test_bad_phone_map_and_window(corpora, tmp_path):
    d = tmp_path / "corpus"
    d.mkdir()
    corpora.write_good(d)
    with pytest.raises(InputError, match="phone mapping brth=xyz"):
        prepare(d, tmp_path / "out", phone_map={"brth": "xyz"}, progress=False)
    with pytest.raises(InputError, match="window must be at least 1"):
        prepare(d, tmp_path / "out", window=0, progress=False)
    with pytest.raises(InputError, match="pad must be"):
        prepare(d, tmp_path / "out", pad="reflect", progress=False)


def test_silent_training_data(corpora, tmp_path):
    d = tmp_path / "corpus"
    corpora.write_audio(d / "quiet.wav", np.zeros(1000, np.int16), fmt="WAV")
    corpora.write_phn(d / "quiet.phn", [(0, 1000, "h#")])
    with pytest.raises(InputError, match="silent"):
        prepare(d, tmp_path / "out", progress=False, split=SplitRule(mode="none"))
    assert not (tmp_path / "out").exists() and [p.name for p in tmp_path.iterdir()] == ["corpus"]


def _exit_status(argv: list[str]) -> int:
    """``waveform-mdn ARGV``'s exit status, in this process (argparse's usage errors exit)."""
    from waveform_mdn.cli import main

    try:
        return main(argv)
    except SystemExit as e:
        return e.code


COMMANDS_ON_BAD_INPUT = {  # command line (NOPE: a missing path, DATA: the prepared demo) -> what the message names
    "prepare": (["prepare", "NOPE", "OUT", "--quiet"], "NOPE: corpus directory does not exist"),
    "corpus-info": (["corpus-info", "NOPE"], "NOPE: corpus directory does not exist"),
    "fit": (["fit", "--config", "recipes/demo/conf/mdn.yaml", "--data.path", "NOPE", "--trainer.max_epochs", "1",
             "--trainer.logger.init_args.save_dir", "OUT"], "NOPE"),
    "generate": (["generate", "--ckpt", "NOPE", "--data", "DATA", "--split", "valid", "--out", "OUT"], "NOPE"),
    "evaluate": (["evaluate", "NOPE", "--quiet"], "NOPE"),
    "compare": (["compare", "NOPE", "--out", "OUT"], "NOPE"),
}


@pytest.mark.parametrize("cmd", sorted(COMMANDS_ON_BAD_INPUT))
def test_every_command_exits_2_with_one_line_naming_the_input(cmd, tmp_path, capsys, demo_prepared, monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[1])  # the recipes' configs
    paths = {"NOPE": str(tmp_path / "nope"), "OUT": str(tmp_path / "out"), "DATA": str(demo_prepared)}
    argv, named = COMMANDS_ON_BAD_INPUT[cmd]
    status = _exit_status([paths.get(a, a) for a in argv])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == 2, err
    assert lines == [lines[0]] and lines[0].startswith(f"waveform-mdn {cmd}: error: "), err
    assert named.replace("NOPE", paths["NOPE"]) in lines[0], err


@pytest.mark.parametrize("argv", [["prepare"], ["corpus-info"], ["fit", "--no-such-option"], ["generate"],
                                  ["evaluate"], ["compare"], ["no-such-command"]], ids=lambda a: a[0])
def test_usage_errors_exit_2(argv, capsys):
    assert _exit_status(argv) == 2
    assert "usage" in capsys.readouterr().err.lower()
