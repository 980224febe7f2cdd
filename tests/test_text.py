"""Saying any sentence (``generate --text``): words to TIMIT phones through the CMU
dictionary, the duration model (each phone's mean duration over the training split,
recorded at preparation time, kept in the checkpoint), ``--phones`` without durations,
one-line errors, and a trained demo model saying a Harvard sentence that is not in the
demo corpus."""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import soundfile as sf
import torch
from pytorch_lightning.cli import LightningCLI

from data_prep import DEMO_CORPUS
from data_prep.phones import TIMIT61
from waveform_mdn.cli import main as cli_main
from waveform_mdn.data import PreparedDataset
from waveform_mdn.datamodule import WaveformDataModule
from waveform_mdn.generation.inputs import phone_durations, sequence_from_inline
from waveform_mdn.generation.settings import GenerationError
from waveform_mdn.generation.text import BREAK, sequence_from_text, text_to_phones, words_of
from waveform_mdn.models import WaveformPredictor

ALL = set(TIMIT61).__contains__  # a model whose training data has every TIMIT phone
SR = 16000


@pytest.fixture(scope="module")
def demo_has(prepared):
    return prepared.phone_durations.__contains__


# ---------------------------------------------------------------- words -> TIMIT phones
def test_she_had_your_dark_suit_with_timit_closures():
    # cmudict: she SH IY1 | had HH AE1 D | your Y AO1 R | dark D AA1 R K | suit S UW1 T
    assert text_to_phones("she had your dark suit", ALL) == [
        "h#", "sh", "iy", "hh", "ae", "dcl", "d", "y", "ao", "r", "dcl", "d", "aa", "r", "kcl", "k",
        "s", "uw", "tcl", "t", "h#"]


def test_she_had_your_dark_suit_on_the_demo_corpus(demo_has):
    """The demo corpus (a synthesiser's labels) has no closures: the releases alone."""
    assert text_to_phones("She had your dark suit.", demo_has) == [
        "h#", "sh", "iy", "hh", "ae", "d", "y", "ao", "r", "d", "aa", "r", "k", "s", "uw", "t", "h#"]


def test_she_had_your_dark_suit_on_the_timit_sample(timit_sample, tmp_path):
    """Real TIMIT labels have closures and pauses: the model's data decides, not a flag."""
    from data_prep.prepare import SplitRule, prepare

    meta = prepare(timit_sample, tmp_path / "t", split=SplitRule(mode="none"), progress=False)
    has = meta["phone_durations"].__contains__
    assert text_to_phones("She had your dark suit, in greasy wash water.", has) == [
        "h#", "sh", "iy", "hh", "ae", "dcl", "d", "y", "ao", "r", "dcl", "d", "aa", "r", "kcl", "k", "s", "uw",
        "tcl", "t", "pau", "ih", "n", "gcl", "g", "r", "iy", "s", "iy", "w", "aa", "sh", "w", "ao", "tcl", "t",
        "axr", "h#"]


def test_reduced_vowels_affricates_and_fold_substitutes(demo_has):
    # the DH AH0 | farther F AA1 R DH ER0 | measure M EH1 ZH ER0 | chip CH IH1 P | judge JH AH1 JH
    text = "the farther measure chip judge"
    assert text_to_phones(text, ALL) == [
        "h#", "dh", "ax", "f", "aa", "r", "dh", "axr", "m", "eh", "zh", "axr", "tcl", "ch", "ih", "pcl", "p",
        "dcl", "jh", "ah", "dcl", "jh", "h#"]
    # the demo speaker has no axr and no zh: their 39-fold partners er and sh
    assert not demo_has("axr") and not demo_has("zh")
    assert text_to_phones(text, demo_has) == [
        "h#", "dh", "ax", "f", "aa", "r", "dh", "er", "m", "eh", "sh", "er", "ch", "ih", "p", "jh", "ah", "jh", "h#"]


def test_pauses_only_at_punctuation_and_only_where_the_data_has_them():
    text = "She had, your suit; dark."
    core = [["sh", "iy"], ["hh", "ae", "dcl", "d"], ["y", "ao", "r"], ["s", "uw", "tcl", "t"], ["dcl", "d", "aa", "r", "kcl", "k"]]

    def expect(pause):
        p = [pause] if pause else []
        return ["h#", *core[0], *core[1], *p, *core[2], *core[3], *p, *core[4], "h#"]

    assert text_to_phones(text, ALL) == expect("pau")
    assert text_to_phones(text, lambda p: ALL(p) and p != "pau") == expect("epi")
    assert text_to_phones(text, lambda p: ALL(p) and p not in ("pau", "epi")) == expect(None)
    assert text_to_phones("she had your suit dark", ALL) == expect(None)
    assert words_of("Wash-water -- all  year. It\u2019s") == ["wash", "water", BREAK, "all", "year", BREAK, "it's"]


def test_unknown_word_is_one_line_naming_it(demo_has):
    with pytest.raises(GenerationError) as e:
        text_to_phones("she had your zzxqvy suit", demo_has)
    msg = str(e.value)
    assert "'zzxqvy'" in msg and "--phones" in msg and "\n" not in msg


def test_a_phone_the_training_data_never_has(demo_has):
    # boy B OY1: the demo speaker MKAL0 never says oy, and nothing folds with it
    assert not demo_has("oy")
    with pytest.raises(GenerationError, match=r"word 'boy'.*'oy' never occurs"):
        text_to_phones("the boy", demo_has)


def test_39_phone_set_sil_for_edges_and_pauses_no_closures(tmp_path):
    from data_prep.prepare import Selection, SplitRule, prepare

    prepare(DEMO_CORPUS, tmp_path / "p39", phone_set="timit39", selection=Selection(speakers=["MKAL0"]),
            split=SplitRule(mode="per_speaker", valid=2, seed=0), progress=False)
    p39 = PreparedDataset(tmp_path / "p39")
    seq = sequence_from_text("She had, your dark suit.", p39, p39.phone_durations)
    symbols = "sil sh iy hh ae d sil y aa r d aa r k s uw t sil".split()  # ao -> aa in the 39 set
    assert [p39.phones[i] for i in seq.segments[:, 2]] == symbols
    assert seq.length == sum(int(round(p39.phone_durations[p] * SR)) for p in symbols)


# ---------------------------------------------------------------- the duration model
def test_durations_are_the_means_over_the_training_utterances_phn_files(prepared):
    """Naive loop over the .PHN files of the training utterances (demo labels are
    contiguous TIMIT symbols, so each line is one segment)."""
    sums, counts = defaultdict(float), defaultdict(int)
    train = [s for s in prepared.sequences if s["split"] == "train"]
    assert len(train) == 10
    for s in train:
        for line in Path(s["source"]).with_suffix(".PHN").read_text().split("\n"):
            if line.strip():
                a, b, label = line.split()
                sums[label] += (int(b) - int(a)) / SR
                counts[label] += 1
    naive = {p: sums[p] / counts[p] for p in sums}
    assert prepared.phone_durations.keys() == naive.keys()
    for p, d in naive.items():
        assert prepared.phone_durations[p] == pytest.approx(d, rel=1e-12), p
    meta = json.loads((prepared.path / "meta.json").read_text())
    assert meta["phone_durations"] == prepared.phone_durations


def test_data_prepared_before_durations_were_recorded(prepared, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(prepared.path, old)
    meta = json.loads((old / "meta.json").read_text())
    del meta["phone_durations"]
    (old / "meta.json").write_text(json.dumps(meta))
    durations, note = phone_durations(None, PreparedDataset(old))
    assert durations == pytest.approx(prepared.phone_durations, rel=1e-12) and "training split" in note
    assert phone_durations(None, prepared) == (prepared.phone_durations, None)
    assert phone_durations({"aa": 0.5}, prepared) == ({"aa": 0.5}, None)  # the checkpoint's first


def test_phones_without_durations_last_their_means(prepared):
    d = prepared.phone_durations
    seq = sequence_from_inline("sh iy hh ae d", prepared, durations=d)
    ends = np.cumsum([int(round(d[p] * SR)) for p in ("sh", "iy", "hh", "ae", "d")])
    np.testing.assert_array_equal(seq.segments[:, 1], ends)
    np.testing.assert_array_equal(seq.segments[:, 2], [prepared.phones.index(p) for p in ("sh", "iy", "hh", "ae", "d")])
    # mixed with given durations; a repeated phone is one segment of its mean (as in training)
    seq = sequence_from_inline("h#:0.1 aa aa s:50ms", prepared, durations=d)
    np.testing.assert_array_equal(seq.segments[:, 1], np.cumsum([1600, int(round(d["aa"] * SR)), 800]))
    with pytest.raises(GenerationError, match=r"'oy'.*never occurs.*oy:SECONDS"):
        sequence_from_inline("h# oy h#", prepared, durations=d)
    with pytest.raises(GenerationError, match="PHONE:SECONDS"):
        sequence_from_inline("h# 0.1", prepared, durations=d)


def test_text_sequence_lasts_the_sum_of_the_means(prepared):
    d = prepared.phone_durations
    seq = sequence_from_text("she had your dark suit", prepared, d)
    labels = ["h#", "sh", "iy", "hh", "ae", "d", "y", "ao", "r", "d", "aa", "r", "k", "s", "uw", "t", "h#"]
    assert seq.length == sum(int(round(d[p] * SR)) for p in labels)
    np.testing.assert_array_equal(seq.segments[:, 2], [prepared.phones.index(p) for p in labels])
    assert seq.name == "she_had_your_dark_suit" and seq.reference is None


# ---------------------------------------------------------------- a trained model says a new sentence
HARVARD_NOT_IN_DEMO = "The wharf could be seen at the farther shore."  # Harvard list 3, sentence 9


@pytest.fixture(scope="module")
def trained(prepared, tmp_path_factory) -> Path:
    """A tiny MDN trained for a few steps by a real Lightning Trainer on the demo speaker."""
    tmp = tmp_path_factory.mktemp("text_run")
    torch.manual_seed(0)
    dm = WaveformDataModule(str(prepared.path), batch_size=64, val_batch_size=1000, seed=0)
    model = WaveformPredictor(**dm.data_hparams(), head="mixture", components=2, hidden=[16, 16])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.configure_optimizers = lambda: LightningCLI.configure_optimizers(model, opt)
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=20, limit_val_batches=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0)
    trainer.fit(model, dm)
    trainer.save_checkpoint(tmp / "tiny.ckpt")
    return tmp / "tiny.ckpt"


def test_trained_demo_model_says_a_harvard_sentence_not_in_the_corpus(trained, prepared, tmp_path, capsys):
    texts = [p.read_text().split(None, 2)[2].strip() for p in DEMO_CORPUS.rglob("*.TXT")]
    assert len(texts) == 36 and HARVARD_NOT_IN_DEMO not in texts
    ckpt = torch.load(trained, map_location="cpu", weights_only=False)
    assert ckpt["hyper_parameters"]["phone_durations"] == prepared.phone_durations

    out = tmp_path / "said"
    rc = cli_main(["generate", "--ckpt", str(trained), "--data", str(prepared.path), "--text", HARVARD_NOT_IN_DEMO,
                 "--no-measure", "--quiet", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    # the DH AH0 | wharf W AO1 R F | could K UH1 D | be B IY1 | seen S IY1 N | at AE1 T |
    # the DH AH0 | farther F AA1 R DH ER0 (no axr in the demo: er) | shore SH AO1 R
    labels = ("h# dh ax w ao r f k uh d b iy s iy n ae t dh ax f aa r dh er sh ao r h#").split()
    meas = json.loads((out / "measurements.json").read_text())
    assert meas["settings"]["phones"] == " ".join(labels) and meas["settings"]["text"] == HARVARD_NOT_IN_DEMO
    assert [p["phone"] for p in meas["files"][0]["info"]["intended_phones"]] == labels
    audio, sr = sf.read(str(out / "the_wharf_could_be_seen_at_the_farther_shore.wav"), dtype="float32")
    assert sr == SR and len(audio) == sum(int(round(prepared.phone_durations[p] * SR)) for p in labels)
    assert np.all(np.isfinite(audio)) and np.std(audio) > 0

    # --phones without durations: the same duration model
    rc = cli_main(["generate", "--ckpt", str(trained), "--data", str(prepared.path), "--phones", "h# sh iy h#",
                 "--no-measure", "--quiet", "--out", str(tmp_path / "p")])
    audio, _ = sf.read(str(tmp_path / "p" / "phones.wav"), dtype="float32")
    assert rc == 0 and len(audio) == sum(int(round(prepared.phone_durations[p] * SR)) for p in ("h#", "sh", "iy", "h#"))

    rc = cli_main(["generate", "--ckpt", str(trained), "--data", str(prepared.path), "--text", "she sells zzxqvy",
                 "--quiet", "--out", str(tmp_path / "bad")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "'zzxqvy'" in err[0] and "--phones" in err[0]
