"""``prepare``: output format, selections, the train/valid split (seeded, recorded),
normalisation on train only, phone filter, 39 fold, resampling, atomic writes."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import data_prep.prepare as prep_mod
from data_prep import FORMAT_VERSION
from data_prep.corpus import CorpusError
from data_prep.phones import PhoneSet
from data_prep.errors import InputError
from data_prep.prepare import Selection, SplitRule, prepare


def _prep(corpus, out, **kw):
    kw.setdefault("progress", False)
    return prepare(corpus, out, **kw)


def _check_format(corpora, out: Path):
    """Every invariant of docs/prepared-format.md that can be checked on the files."""
    assert sorted(p.name for p in out.iterdir()) == ["meta.json", "segments.npy", "sequences.json", "wave.npy"]
    meta, seqs, wave, phones, segs = corpora.read_prepared(out)
    assert wave.dtype == np.int16 and segs.dtype == np.int64
    assert segs.ndim == 2 and segs.shape[1] == 5
    n_ph = len(meta["phones"])
    assert meta["format_version"] == FORMAT_VERSION == 2 and meta["sample_rate"] == 16000
    pos = seg_pos = 0
    for s in seqs:
        assert s["start"] == pos and s["seg_start"] == seg_pos and s["split"] in ("train", "valid")
        rows = segs[s["seg_start"]: s["seg_start"] + s["seg_count"]]
        assert rows[0, 0] == s["start"] and rows[-1, 1] == s["start"] + s["length"]
        assert np.all(rows[1:, 0] == rows[:-1, 1]) and np.all(rows[:, 1] > rows[:, 0])
        assert np.all(rows[:, 2] < n_ph) and np.all(rows[:, 3:] <= n_ph)
        pos += s["length"]
        seg_pos += s["seg_count"]
    assert pos == len(wave) and seg_pos == len(segs)
    return meta, seqs, wave, phones, segs


# ----------------------------------------------------------------------- the demo corpus
def test_demo_prepared_all_matches_source(corpora, demo_prepared_all, demo_corpus):
    meta, seqs, wave, phones, segs = _check_format(corpora, demo_prepared_all)
    assert len(seqs) == 36 and meta["phone_set"] == "timit61" and meta["window"] == 240
    assert meta["split"]["mode"] == "official"
    assert {s["speaker"] for s in seqs if s["split"] == "valid"} == {"MKED0"}
    ps = PhoneSet()
    for s in seqs[::5]:
        x, sr = sf.read(s["source"], dtype="int16")
        lab = corpora.parse_phn(Path(s["source"]).with_suffix(".PHN"))
        a0, b0 = lab[0][0], lab[-1][1]
        assert np.array_equal(wave[s["start"]: s["start"] + s["length"]], x[a0:b0])
        rows = segs[s["seg_start"]: s["seg_start"] + s["seg_count"]]
        assert [ps.symbols[i] for i in rows[:, 2]] == [p for _, _, p in lab]
        assert (rows[:, :2] - s["start"] + a0).tolist() == [[a, b] for a, b, _ in lab]
        assert s["utterance"] == s["id"] and s["corpus_split"] in ("train", "test")


def test_normalisation_on_train_only(corpora, demo_prepared_all):
    meta, seqs, wave, *_ = corpora.read_prepared(demo_prepared_all)
    train = np.concatenate([wave[s["start"]: s["start"] + s["length"]] for s in seqs if s["split"] == "train"])
    x = train / 32768.0
    norm = meta["normalisation"]
    assert norm["computed_on"] == "train"
    assert norm["mean"] == pytest.approx(x.mean(), rel=1e-9, abs=1e-12)
    assert norm["std"] == pytest.approx(x.std(), rel=1e-7)
    assert abs(norm["std"] - (wave / 32768.0).std()) > 1e-6  # differs from all the data


def test_per_speaker_split_seeded_and_recorded(demo_corpus, tmp_path):
    m0 = _prep(demo_corpus, tmp_path / "a", split=SplitRule(valid=1, seed=7))
    m1 = _prep(demo_corpus, tmp_path / "b", split=SplitRule(valid=1, seed=7))
    m2 = _prep(demo_corpus, tmp_path / "c", split=SplitRule(valid=1, seed=8))
    assert m0["split"]["seed"] == 7 and m0["split"]["mode"] == "per_speaker" and m0["split"]["valid"] == 1
    v0 = m0["split"]["valid_sequences"]
    assert v0 == m1["split"]["valid_sequences"]
    assert v0 != m2["split"]["valid_sequences"]
    on_disk = json.loads((tmp_path / "a" / "meta.json").read_text())
    assert on_disk["split"]["valid_sequences"] == v0 and on_disk["split"]["seed"] == 7
    seqs = json.loads((tmp_path / "a" / "sequences.json").read_text())
    assert sorted(s["id"] for s in seqs if s["split"] == "valid") == sorted(v0)
    for spk in ("FSLT0", "MKAL0", "MKED0"):
        assert [s["split"] for s in seqs if s["speaker"] == spk].count("valid") == 1
    assert m0["summary"]["train"]["utterances"] == 33 and m0["summary"]["valid"]["utterances"] == 3
    m3 = _prep(demo_corpus, tmp_path / "d", split=SplitRule(valid=0.25, seed=1))  # fraction
    assert m3["summary"]["valid"]["utterances"] == 9


def test_nine_train_one_valid_per_speaker(corpora, tmp_path):
    """A TIMIT-like corpus of 10 utterances per speaker: 9 train and 1 valid each."""
    utts = ("SA1", "SA2", "SI1", "SI2", "SI3", "SX1", "SX2", "SX3", "SX4", "SX5")
    corpora.timit_corpus(tmp_path / "c", utts=utts, seg_len=60)
    meta = _prep(tmp_path / "c", tmp_path / "o", split=SplitRule(valid=1, seed=3))
    seqs = json.loads((tmp_path / "o" / "sequences.json").read_text())
    for spk in ("FABC0", "MDEF0", "MGHI0"):
        splits = [s["split"] for s in seqs if s["speaker"] == spk]
        assert splits.count("train") == 9 and splits.count("valid") == 1
    assert meta["summary"]["valid"]["speakers"] == 3


def test_nine_one_on_timit_sample(corpora, timit_sample, tmp_path):
    meta = _prep(timit_sample, tmp_path / "o", split=SplitRule(valid=0.1, seed=0))
    _, seqs, *_ = _check_format(corpora, tmp_path / "o")
    speakers = {s["speaker"] for s in seqs}
    assert len(speakers) == 12 and len(seqs) == 120
    for spk in speakers:
        assert [s["split"] for s in seqs if s["speaker"] == spk].count("valid") == 1
    assert meta["source"]["layouts"] == ["nltk"]


def test_split_total_and_none_and_errors(demo_corpus, tmp_path):
    m = _prep(demo_corpus, tmp_path / "t", split=SplitRule(mode="total", valid=5, seed=0))
    assert m["summary"]["valid"]["utterances"] == 5
    m = _prep(demo_corpus, tmp_path / "n", split=SplitRule(mode="none"))
    assert m["summary"]["valid"]["sequences"] == 0 and m["split"]["valid_sequences"] == []
    with pytest.raises(InputError, match=r"speaker FSLT0 has 12 utterance\(s\): cannot take 12"):
        _prep(demo_corpus, tmp_path / "x", split=SplitRule(valid=12))
    with pytest.raises(InputError, match="unknown split mode"):
        _prep(demo_corpus, tmp_path / "x", split=SplitRule(mode="bogus"))
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("sel,expect", [
    (Selection(speakers=["mkal0", "FSLT0"]), {"speakers": {"MKAL0", "FSLT0"}, "n": 24}),
    (Selection(dialects=["DR3"]), {"speakers": {"MKED0"}, "n": 12}),
    (Selection(utt_types=["sa"]), {"n": 6, "types": {"SA"}}),
    (Selection(utterances=["MKAL0_SA1", "sx111"]), {"n": 2}),
    (Selection(corpus_split="test"), {"speakers": {"MKED0"}, "n": 12}),
    (Selection(corpus_split="train", max_utterances=5), {"n": 5}),
    (Selection(utt_types=["SX"], max_sequences=4), {"n": 4}),
])
def test_selections(corpora, demo_corpus, tmp_path, sel, expect):
    meta = _prep(demo_corpus, tmp_path / "o", selection=sel, split=SplitRule(mode="none"))
    _, seqs, *_ = _check_format(corpora, tmp_path / "o")
    assert len(seqs) == expect["n"]
    if "speakers" in expect:
        assert {s["speaker"] for s in seqs} == expect["speakers"]
    if "types" in expect:
        assert {s["utt_type"] for s in seqs} == expect["types"]
    assert meta["selection"] == dataclasses.asdict(sel)


def test_empty_selection_is_an_error(demo_corpus, tmp_path):
    with pytest.raises(InputError, match=r"demo_corpus: the selection matched no utterances.*NOBODY"):
        _prep(demo_corpus, tmp_path / "o", selection=Selection(speakers=["NOBODY"]))
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------- phone filter
def test_aa_filter_on_timit_sample(corpora, timit_sample, tmp_path):
    """One sequence per /aa/ segment: samples equal the source slice, prev/next are the
    phones around it in the source."""
    _prep(timit_sample, tmp_path / "o", selection=Selection(phone_filter=["aa"]),
          split=SplitRule(mode="none"), pad="zero")
    meta, seqs, wave, phones, segs = _check_format(corpora, tmp_path / "o")
    ps = PhoneSet()
    no = len(ps)
    expected = []
    for phn in sorted(timit_sample.glob("*/*.phn")):
        lab = corpora.parse_phn(phn)
        for k, (a, b, p) in enumerate(lab):
            if p == "aa":
                expected.append((phn.with_suffix(".wav"), a, b,
                                 ps.id(lab[k - 1][2]) if k else no,
                                 ps.id(lab[k + 1][2]) if k + 1 < len(lab) else no))
    assert len(expected) == 79 and len(seqs) == len(expected)
    got = sorted(seqs, key=lambda s: (s["source"], s["start"]))
    by_src = {}
    for s in got:
        by_src.setdefault(s["source"], []).append(s)
    i = 0
    for src in sorted(by_src):
        x, _ = sf.read(src, dtype="int16")
        for s in by_src[src]:
            path, a, b, prev, nxt = expected[i]
            i += 1
            assert Path(src) == path and s["length"] == b - a and s["seg_count"] == 1
            assert np.array_equal(wave[s["start"]: s["start"] + s["length"]], x[a:b])
            row = segs[s["seg_start"]]
            assert row.tolist() == [s["start"], s["start"] + b - a, ps.id("aa"), prev, nxt]
            assert np.all(phones[s["start"]: s["start"] + s["length"]] == ps.id("aa"))
    assert i == len(expected)
    # the dataset's phone context of every example is that segment's (next = after it in the source)
    import torch

    from waveform_mdn.data import NextSampleDataset

    ds = NextSampleDataset(tmp_path / "o", split=None, window=240, pad="zero")
    assert len(ds) == len(wave)
    b = ds.get_batch(torch.arange(len(ds)))
    rows = segs[np.searchsorted(segs[:, 0], np.arange(len(wave)), side="right") - 1]
    assert np.array_equal(b["next_phone"].numpy(), rows[:, 4]) and np.array_equal(b["prev_phone"].numpy(), rows[:, 3])


def test_phone_filter_skips_short_segments_and_lists_them(corpora, tmp_path):
    d = tmp_path / "c"
    x = corpora.signal(1000)
    corpora.write_audio(d / "u.wav", x, fmt="WAV")
    corpora.write_phn(d / "u.phn", [(0, 100, "h#"), (100, 400, "aa"), (400, 500, "s"), (500, 600, "aa"), (600, 1000, "h#")])
    meta = _prep(d, tmp_path / "o", selection=Selection(phone_filter=["aa"]), split=SplitRule(mode="none"), window=150)
    _, seqs, wave, _, segs = corpora.read_prepared(tmp_path / "o")
    assert [s["id"] for s in seqs] == ["u_001"] and np.array_equal(wave, x[100:400])
    assert len(meta["skipped"]) == 1 and "u_003 has 100 samples" in meta["skipped"][0]
    ps = PhoneSet()
    assert segs[0].tolist() == [0, 300, ps.id("aa"), ps.id("h#"), ps.id("s")]


def test_phone_filter_unknown_phone(demo_corpus, tmp_path):
    with pytest.raises(InputError, match=r"phone filter \['xx'\]"):
        _prep(demo_corpus, tmp_path / "o", selection=Selection(phone_filter=["xx"]))


# ------------------------------------------------------------------------- 39 and rates
def test_timit39_fold_merges_q(corpora, timit_sample, tmp_path):
    _prep(timit_sample, tmp_path / "o", phone_set="timit39", split=SplitRule(mode="none"),
          selection=Selection(speakers=["MCPM0", "FAEM0"]))
    meta, seqs, wave, phones, segs = _check_format(corpora, tmp_path / "o")
    assert meta["phone_set"] == "timit39" and len(meta["phones"]) == 39 and "q" not in meta["phones"]
    ps39, n_q = PhoneSet("timit39"), 0
    for s in seqs:
        lab = corpora.parse_phn(Path(s["source"]).with_suffix(".phn"))
        ids = phones[s["start"]: s["start"] + s["length"]]
        for k, (a, b, p) in enumerate(lab):
            if p == "q" and k > 0:  # a q sample carries the phone before it
                n_q += 1
                assert np.all(ids[a:b] == ps39.id(ps39.map_label(lab[k - 1][2])))
            elif p != "q":
                assert np.all(ids[a:b] == ps39.id(ps39.map_label(p)))
    assert n_q > 0


@pytest.mark.parametrize("phone_set", ["timit61", "timit39"])
def test_phone_durations_are_means_over_the_training_split(corpora, tmp_path, phone_set):
    """Known answers: two training utterances (segments of 400/437/474 and 600/637/674
    samples, by position mod 3) and a validation speaker (1000+) that must not count."""
    d = tmp_path / "c" / "TRAIN" / "DR1" / "FABC0"
    corpora.write_utterance(d, "SA1", seg_len=400, seed=1)
    corpora.write_utterance(d, "SA2", seg_len=600, seed=2)
    corpora.write_utterance(tmp_path / "c" / "TEST" / "DR2" / "MDEF0", "SA1", seg_len=1000, seed=3)
    meta = _prep(tmp_path / "c", tmp_path / "o", phone_set=phone_set, split=SplitRule(mode="official"))
    # labels h# sh iy hv ae dcl d aa r h#, lengths by position: base + 0, 37, 74, 0, 37, 74, 0, 37, 74, 0
    per_label = {"sh": 37, "iy": 74, "hv": 0, "ae": 37, "dcl": 74, "d": 0, "aa": 37, "r": 74}
    expect = {p: (500 + extra) / corpora.SR for p, extra in per_label.items()}  # mean of base 400 and 600
    if phone_set == "timit61":
        expect["h#"] = 500 / corpora.SR
    else:  # h# and dcl fold to sil, hv to hh; each utterance: sil 0, sil 74, sil 0 (+ base)
        expect["hh"] = expect.pop("hv")
        del expect["dcl"]
        expect["sil"] = (3 * 500 + 74) / 3 / corpora.SR
    assert meta["phone_durations"] == pytest.approx(expect, rel=1e-12)
    assert json.loads((tmp_path / "o" / "meta.json").read_text())["phone_durations"] == meta["phone_durations"]


@pytest.mark.parametrize("rate", [8000, 22050])
def test_resampled_corpus(corpora, tmp_path, rate):
    d = tmp_path / "c"
    n = rate  # one second
    corpora.write_audio(d / "u.wav", corpora.signal(n, 1), sr=rate, fmt="WAV")
    q = rate // 4
    corpora.write_phn(d / "u.phn", [(0, q, "h#"), (q, 2 * q, "aa"), (2 * q, 3 * q, "s"), (3 * q, n, "h#")])
    meta = _prep(d, tmp_path / "o", split=SplitRule(mode="none"))
    _, seqs, wave, _, segs = _check_format(corpora, tmp_path / "o")
    assert meta["sample_rate"] == 16000
    assert abs(len(wave) - 16000) <= 1
    scale = 16000 / rate
    assert segs[:, :2].tolist() == [[round(a * scale), round(b * scale)] for a, b in
                                    [(0, q), (q, 2 * q), (2 * q, 3 * q), (3 * q, n)]]


def test_wrong_rate_refused_without_resampling(corpora, tmp_path):
    d = tmp_path / "c"
    corpora.write_audio(d / "u.wav", corpora.signal(8000), sr=8000, fmt="WAV")
    corpora.write_phn(d / "u.phn", [(0, 8000, "h#")])
    with pytest.raises(Exception, match=r"u\.wav: sample rate 8000 Hz, expected 16000 Hz"):
        _prep(d, tmp_path / "o", resample=False, split=SplitRule(mode="none"))


def test_arctic_corpus_prepares(corpora, tmp_path):
    v = tmp_path / "cmu_us_xyz_arctic"
    x = corpora.signal(4000)
    corpora.write_audio(v / "wav" / "a1.wav", x, fmt="WAV")
    (v / "lab").mkdir()
    (v / "lab" / "a1.lab").write_text("#\n0.05 125 pau\n0.15 125 aa\n0.25 125 pau\n")
    meta = _prep(tmp_path, tmp_path / "o", split=SplitRule(mode="none"))
    _, seqs, wave, _, segs = _check_format(corpora, tmp_path / "o")
    assert seqs[0]["speaker"] == "xyz" and meta["source"]["layouts"] == ["arctic"]
    assert np.array_equal(wave, x) and segs[:, 1].tolist() == [800, 2400, 4000]


# ------------------------------------------------------------------------- atomic write
def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if "tmp" in p.name or "old" in p.name)


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_interrupted_write_leaves_nothing(demo_corpus, tmp_path, monkeypatch, exc):
    def boom(*a, **k):  # called after wave.npy and segments.npy are written
        raise exc("interrupted")

    monkeypatch.setattr(prep_mod, "summarise", boom)
    out = tmp_path / "OUT"
    with pytest.raises(exc):
        _prep(demo_corpus, out, selection=Selection(speakers=["MKAL0"]))
    assert not out.exists() and list(tmp_path.iterdir()) == []


def _failing(real, fails_on: str, message: str):
    """``real`` (np.save or Path.rename), raising OSError(message) when its first argument's
    name contains ``fails_on``."""
    def wrapper(first, *a, **k):
        if fails_on in Path(first).name:
            raise OSError(message)
        return real(first, *a, **k)
    return wrapper


@pytest.mark.parametrize("owner, name, fails_on, message", [
    (np, "save", "segments.npy", "disk full"),  # while writing the arrays
    (Path, "rename", ".tmp-", "rename failed"),  # at the last step, moving the new directory into place
])
def test_failed_overwrite_keeps_existing(corpora, demo_corpus, tmp_path, monkeypatch, owner, name, fails_on, message):
    out = tmp_path / "OUT"
    _prep(demo_corpus, out, selection=Selection(speakers=["MKAL0"]))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    monkeypatch.setattr(owner, name, _failing(getattr(owner, name), fails_on, message))
    with pytest.raises(OSError, match=message):
        _prep(demo_corpus, out, selection=Selection(speakers=["FSLT0"]), overwrite=True)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert _leftovers(tmp_path) == []
    # and it works when nothing fails
    _prep(demo_corpus, out, selection=Selection(speakers=["FSLT0"]), overwrite=True)
    _, seqs, *_ = _check_format(corpora, out)
    assert {s["speaker"] for s in seqs} == {"FSLT0"} and _leftovers(tmp_path) == []


def test_existing_out_needs_overwrite(demo_corpus, tmp_path):
    out = tmp_path / "OUT"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(InputError, match="OUT: already exists"):
        _prep(demo_corpus, out)
    assert (out / "precious.txt").read_text() == "keep me"


def test_stale_tmp_dir_replaced(demo_corpus, tmp_path, monkeypatch):
    import os

    stale = tmp_path / f".OUT.tmp-{os.getpid()}"
    stale.mkdir()
    (stale / "wave.npy").write_bytes(b"junk")
    _prep(demo_corpus, tmp_path / "OUT", selection=Selection(speakers=["MKAL0"], max_utterances=2))
    assert not stale.exists() and (tmp_path / "OUT" / "meta.json").is_file()
    shutil.rmtree(tmp_path / "OUT")


def test_split_by_sequence_and_official_needs_timit(corpora, tmp_path):
    d = tmp_path / "c"
    for name in ("u1", "u2"):
        corpora.write_audio(d / f"{name}.wav", corpora.signal(3000, seed=len(name)), fmt="WAV")
        corpora.write_phn(d / f"{name}.phn", [(0, 500, "h#"), (500, 1000, "aa"), (1000, 1500, "s"), (1500, 2000, "aa"),
                                      (2000, 3000, "h#")])
    m = _prep(d, tmp_path / "o", selection=Selection(phone_filter=["aa"]), window=100,
              split=SplitRule(mode="total", valid=1, unit="sequence", seed=0))
    assert m["summary"]["train"]["sequences"] == 3 and m["summary"]["valid"]["sequences"] == 1
    m = _prep(d, tmp_path / "o2", selection=Selection(phone_filter=["aa"]), window=100,
              split=SplitRule(mode="total", valid=1, unit="utterance", seed=0))
    assert m["summary"]["train"]["sequences"] == 2 and m["summary"]["valid"]["sequences"] == 2
    assert m["summary"]["valid"]["utterances"] == 1
    with pytest.raises(InputError, match=r"u1\.wav: the official split needs the TIMIT layout"):
        _prep(d, tmp_path / "o3", split=SplitRule(mode="official"))


@pytest.mark.parametrize("split, pattern", [
    (SplitRule(mode="official"), r"the official split needs the TIMIT layout"),
    (SplitRule(mode="per_speaker", valid=2), r"speaker \(all\) has 2 utterance\(s\): cannot take 2"),
    (SplitRule(mode="total", valid=0.1), r"the split takes no validation data"),
    (SplitRule(unit="phone"), r"split unit must be 'utterance' or 'sequence', not 'phone'"),
])
def test_split_errors_come_before_any_audio_is_read(corpora, tmp_path, monkeypatch, split, pattern):
    d = tmp_path / "c"
    for name in ("u1", "u2"):
        corpora.write_audio(d / f"{name}.wav", corpora.signal(3000, seed=len(name)), fmt="WAV")
        corpora.write_phn(d / f"{name}.phn", [(0, 1000, "h#"), (1000, 2000, "aa"), (2000, 3000, "h#")])

    def no_reading(*a, **k):
        raise AssertionError("audio was read before the split was checked")

    monkeypatch.setattr("data_prep.sequences.read_audio", no_reading)
    with pytest.raises(InputError, match=pattern):
        _prep(d, tmp_path / "o", split=split)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("valid", [0, 0.01])
def test_a_split_that_takes_no_validation_data_is_refused(demo_corpus, tmp_path, valid):
    """--valid 0, or a fraction that rounds to 0 for every speaker, would only fail later
    in training: refuse it at preparation, naming the rule, and write nothing."""
    out = tmp_path / "p"
    with pytest.raises(InputError, match=r"no validation data.*--valid"):
        prepare(demo_corpus, out, split=SplitRule(mode="per_speaker", valid=valid), progress=False)
    assert not out.exists() and not list(tmp_path.iterdir())
    # --split none is the way to have no validation data
    meta = prepare(demo_corpus, out, selection=Selection(speakers=["MKAL0"]),
                   split=SplitRule(mode="none"), progress=False)
    assert meta["summary"]["valid"]["sequences"] == 0


@pytest.mark.parametrize("end_s, ok", [(0.2050, True), (0.2150, False)])
def test_lab_last_phone_may_overshoot_the_audio_by_rounding_only(corpora, tmp_path, end_s, ok):
    """3,200 samples of audio (0.2 s); a last .lab phone ending 5 ms later is a rounding
    artefact (cut at the audio's end), 15 ms later is an error naming file and line."""
    voice = tmp_path / "corpus" / "cmu_us_slt_arctic"
    corpora.write_audio(voice / "wav" / "arctic_a0001.wav", corpora.signal(3200), fmt="WAV")
    corpora.write_audio(voice / "wav" / "arctic_a0002.wav", corpora.signal(3200, seed=1), fmt="WAV")
    (voice / "lab").mkdir()
    for name in ("arctic_a0001", "arctic_a0002"):
        (voice / "lab" / f"{name}.lab").write_text(
            f"#\n0.025 125 pau\n0.0875 125 hh\n0.14 125 ah\n{end_s:.4f} 125 pau\n")
    out = tmp_path / "p"
    if ok:
        prepare(tmp_path / "corpus", out, split=SplitRule(mode="none"), progress=False)
        segs = np.load(out / "segments.npy")
        assert segs[-1, 1] == 6400 and segs[3, 1] == 3200  # both utterances end at the audio's end
    else:
        with pytest.raises(CorpusError, match=r"arctic_a0001\.lab:5: segment \[2240, 3440\) ends after the audio"):
            prepare(tmp_path / "corpus", out, split=SplitRule(mode="none"), progress=False)
