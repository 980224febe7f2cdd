"""On-the-fly windows and phone context of ``waveform_mdn.data``: property tests against a
naive per-example reference (random sequences, segment layouts, window lengths; both pad
modes, both context modes, in memory or memory-mapped), and checks on a prepared demo
dataset against the source audio files."""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from data_prep import FORMAT_VERSION
from data_prep.phones import PhoneSet
from waveform_mdn.data import NextSampleDataset, NotPreparedError, PreparedDataset, phone_context

N_PH = 6  # phone ids 0..5, NO_PHONE = 6


@st.composite
def prepared_specs(draw):
    seqs = []
    for _ in range(draw(st.integers(1, 4))):
        L = draw(st.integers(1, 70))
        n_cut = draw(st.integers(0, min(6, L - 1)))
        cuts = sorted(draw(st.sets(st.integers(1, L - 1), min_size=n_cut, max_size=n_cut))) if n_cut else []
        bounds = [0, *cuts, L]
        rows = [(a, b, draw(st.integers(0, N_PH - 1)), draw(st.integers(0, N_PH)), draw(st.integers(0, N_PH)))
                for a, b in zip(bounds[:-1], bounds[1:])]
        seqs.append({"length": L, "rows": rows, "split": draw(st.sampled_from(["train", "valid"]))})
    return {
        "seqs": seqs,
        "seed": draw(st.integers(0, 2**31)),
        "mean": draw(st.floats(-0.01, 0.01)),
        "std": draw(st.floats(0.05, 0.5)),
    }


def write_prepared(d: Path, spec) -> np.ndarray:
    """A prepared directory in the documented format; returns the wave."""
    n = sum(s["length"] for s in spec["seqs"])
    wave = np.random.default_rng(spec["seed"]).integers(-32768, 32768, n).astype(np.int16)
    records, segs, pos = [], [], 0
    for i, s in enumerate(spec["seqs"]):
        records.append({"id": f"s{i}", "utterance": f"u{i}", "speaker": "X", "split": s["split"],
                        "start": pos, "length": s["length"], "seg_start": len(segs), "seg_count": len(s["rows"])})
        segs += [(a + pos, b + pos, p, pv, nx) for a, b, p, pv, nx in s["rows"]]
        pos += s["length"]
    seg = np.array(segs, dtype=np.int64)
    np.save(d / "wave.npy", wave)
    np.save(d / "segments.npy", seg)
    (d / "sequences.json").write_text(json.dumps(records))
    meta = {"format_version": FORMAT_VERSION, "sample_rate": 16000, "phones": [f"p{i}" for i in range(N_PH)], "window": 240,
            "normalisation": {"mean": spec["mean"], "std": spec["std"]}}
    (d / "meta.json").write_text(json.dumps(meta))
    return wave


def reference(spec, wave, split, window, pad, context):
    """Naive per-example lists: target offset, raw window, raw target, context."""
    out = {k: [] for k in ("t", "window", "target", "phone", "prev_phone", "next_phone", "position")}
    pos = 0
    for s in spec["seqs"]:
        start, L = pos, s["length"]
        pos += L
        if split is not None and s["split"] != split:
            continue
        for t in range(start + (window if pad == "skip" else 0), start + L):
            out["t"].append(t)
            out["window"].append([int(wave[p]) if p >= start else 0 for p in range(t - window, t)])
            out["target"].append(int(wave[t]))
            ref = t if context == "target" else max(t - window, start)
            (a, b, ph, pv, nx), = [r for r in s["rows"] if r[0] + start <= ref < r[1] + start]
            out["phone"].append(ph)
            out["prev_phone"].append(pv)
            out["next_phone"].append(nx)
            out["position"].append((ref - start - a) / (b - a))
    return out


def _raw(x: torch.Tensor, mean: float, std: float) -> np.ndarray:
    return np.round((x.double().numpy() * std + mean) * 32768.0).astype(np.int64)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=prepared_specs(), window=st.integers(1, 45), pad=st.sampled_from(["skip", "zero"]),
       context=st.sampled_from(["target", "window_start"]), split=st.sampled_from([None, "train", "valid"]),
       in_memory=st.booleans())
@example(spec={"seqs": [{"length": 30, "rows": [(0, 12, 1, 6, 2), (12, 30, 2, 1, 6)], "split": "train"}], "seed": 3,
               "mean": 0.0, "std": 0.1}, window=45, pad="zero", context="target", split=None, in_memory=False)
def test_windows_and_context_match_reference(spec, window, pad, context, split, in_memory):
    with tempfile.TemporaryDirectory() as d:
        wave = write_prepared(Path(d), spec)
        ref = reference(spec, wave, split, window, pad, context)
        prepared = PreparedDataset(d)
        in_split = [s for s in spec["seqs"] if split is None or s["split"] == split]
        if not ref["t"]:
            with pytest.raises(ValueError, match="no sequences in split" if not in_split else "shorter than"):
                NextSampleDataset(prepared, split, window, pad, context, in_memory=in_memory)
            return
        ds = NextSampleDataset(prepared, split, window, pad, context, in_memory=in_memory)
        n = len(ref["t"])
        assert len(ds) == n
        idx = torch.arange(n)
        assert ds.locate(idx)[0].tolist() == ref["t"]
        b = ds.get_batch(idx)
        assert b["window"].shape == (n, window) and b["window"].dtype == torch.float32
        assert b["target"].shape == (n,) and b["position"].dtype == torch.float32
        m, s = spec["mean"], spec["std"]
        assert _raw(b["window"], m, s).tolist() == ref["window"]
        assert _raw(b["target"], m, s).tolist() == ref["target"]
        expect_w = (np.array(ref["window"], dtype=np.float64) / 32768.0 - m) / s
        np.testing.assert_allclose(b["window"].numpy(), expect_w.reshape(n, window), rtol=1e-5, atol=1e-5)
        for key in ("phone", "prev_phone", "next_phone"):
            assert b[key].dtype == torch.int64 and b[key].tolist() == ref[key], key
        np.testing.assert_allclose(b["position"].numpy(), ref["position"], atol=1e-6)
        assert float(b["position"].min()) >= 0 and float(b["position"].max()) < 1
        # a shuffled batch, and a single example, agree with the full batch
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(0))
        b2 = ds[perm]
        for key in b:
            assert torch.equal(b2[key], b[key][perm]), key
        one = ds[int(perm[0])]
        for key in b:
            assert torch.equal(one[key], b[key][int(perm[0])]), key
        with pytest.raises(IndexError):
            ds.get_batch(torch.tensor([n]))


@settings(max_examples=80, deadline=None)
@given(layout=st.lists(st.integers(1, 30), min_size=1, max_size=8), offset=st.integers(0, 1000),
       window=st.integers(1, 100), context=st.sampled_from(["target", "window_start"]), data=st.data())
def test_phone_context_naive(layout, offset, window, context, data):
    """phone_context on an arbitrary (offset) segment table against a per-sample scan."""
    bounds = np.cumsum([offset, *layout])
    rows = [(int(a), int(b), data.draw(st.integers(0, 9)), data.draw(st.integers(0, 10)), data.draw(st.integers(0, 10)))
            for a, b in zip(bounds[:-1], bounds[1:])]
    seg = torch.tensor(rows, dtype=torch.int64)
    start, end = int(bounds[0]), int(bounds[-1])
    targets = torch.arange(start - 3, end + 3)  # a few outside the table: its first or last segment
    got = phone_context(seg, targets, torch.full_like(targets, start - 3), context, window)
    for i, t in enumerate(range(start - 3, end + 3)):
        r = t if context == "target" else max(t - window, start - 3)
        inside = [row for row in rows if row[0] <= r < row[1]]
        (a, b, p, pv, nx), = inside or [rows[0] if r < start else rows[-1]]
        assert (int(got["phone"][i]), int(got["prev_phone"][i]), int(got["next_phone"][i])) == (p, pv, nx)
        assert abs(float(got["position"][i]) - min(max((r - a) / (b - a), 0.0), 1.0 - 1e-6)) < 1e-6


def test_bad_arguments(demo_prepared):
    with pytest.raises(ValueError, match="pad must be"):
        NextSampleDataset(demo_prepared, pad="reflect")
    with pytest.raises(ValueError, match="context must be"):
        NextSampleDataset(demo_prepared, context="middle")
    with pytest.raises(ValueError, match="window must be positive"):
        NextSampleDataset(demo_prepared, window=0)
    with pytest.raises(FileNotFoundError, match=r"no meta\.json\); create one with `waveform-mdn prepare CORPUS_DIR OUT_DIR`"):
        PreparedDataset(Path(demo_prepared).parent)
    one = torch.zeros(1, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"context must be one of \('target', 'window_start'\), not 'middle'"):
        phone_context(torch.zeros(1, 5, dtype=torch.int64), one, one, "middle")


def test_the_data_says_its_phone_ids_and_too_short_sequences(tmp_path):
    """Ids 0 .. P-1 are the P phones, P is "no phone": P + 1 ids; a split whose sequences are
    all at most one window long has no examples, and the error says the length needed."""
    spec = {"seqs": [{"length": 50, "rows": [(0, 20, 1, 6, 2), (20, 50, 2, 1, 6)], "split": "train"}],
            "seed": 0, "mean": 0.0, "std": 0.1}
    write_prepared(tmp_path, spec)
    prepared = PreparedDataset(tmp_path)
    assert (prepared.no_phone, prepared.n_phone_ids) == (N_PH, N_PH + 1)
    with pytest.raises(ValueError, match=r"shorter than window\+1 = 51 samples"):
        NextSampleDataset(prepared, "train", window=50)


def test_a_dataset_of_format_1_must_be_prepared_again(tmp_path):
    """Format 1 stored a per-sample phones.npy (the segment table already says it); a
    dataset of that format is refused with the one-line advice, not read half-right."""
    spec = {"seqs": [{"length": 50, "rows": [(0, 20, 1, 6, 2), (20, 50, 2, 1, 6)], "split": "train"}],
            "seed": 0, "mean": 0.0, "std": 0.1}
    write_prepared(tmp_path, spec)
    assert PreparedDataset(tmp_path).normalisation.std == 0.1  # the current format opens
    meta = json.loads((tmp_path / "meta.json").read_text())
    (tmp_path / "meta.json").write_text(json.dumps({**meta, "format_version": 1}))
    np.save(tmp_path / "phones.npy", np.repeat([1, 2], [20, 30]).astype(np.uint8))
    with pytest.raises(NotPreparedError, match=r"meta\.json: format_version 1 is not supported \(this "
                       r"waveform-mdn reads version 2\); prepare the data again$"):
        PreparedDataset(tmp_path)


# ------------------------------------------------------------ against the source audio
def _source_context(labels, ref):
    ps = PhoneSet()
    for k, (a, b, p) in enumerate(labels):
        if a <= ref < b:
            prev = ps.id(labels[k - 1][2]) if k else len(ps)
            nxt = ps.id(labels[k + 1][2]) if k + 1 < len(labels) else len(ps)
            return ps.id(p), prev, nxt, (ref - a) / (b - a)
    raise AssertionError(ref)


@pytest.mark.parametrize("pad", ["skip", "zero"])
@pytest.mark.parametrize("context", ["target", "window_start"])
def test_demo_windows_equal_source_audio(corpora, demo_prepared, pad, context):
    """Random examples of the prepared demo: the window is the slice of the .WAV before the
    target (zeros before the start with pad='zero'), the context that of the .PHN."""
    prepared = PreparedDataset(demo_prepared)
    ds = NextSampleDataset(prepared, "train", window=240, pad=pad, context=context)
    seqs = [prepared.sequences[i] for i in ds.seq_indices]
    expected_len = sum(max(s["length"] - (240 if pad == "skip" else 0), 0) for s in seqs)
    assert len(ds) == expected_len == prepared.meta["summary"]["train"]["examples"] + (
        0 if pad == "skip" else 240 * len(seqs))
    g = torch.Generator().manual_seed(1)
    idx = torch.cat([torch.randint(0, len(ds), (300,), generator=g), torch.arange(5), torch.tensor([len(ds) - 1])])
    b = ds.get_batch(idx)
    t = ds.locate(idx)[0]
    cache = {}
    for i in range(len(idx)):
        tt = int(t[i])
        s = next(s for s in seqs if s["start"] <= tt < s["start"] + s["length"])
        if s["source"] not in cache:
            labels = corpora.parse_phn(Path(s["source"]).with_suffix(".PHN"))
            cache[s["source"]] = (sf.read(s["source"], dtype="int16")[0], labels)
        x, labels = cache[s["source"]]
        local = tt - s["start"] + labels[0][0]
        want = np.array([x[p] if p >= labels[0][0] else 0 for p in range(local - 240, local)], dtype=np.int64)
        assert np.array_equal(_raw(b["window"][i], prepared.normalisation.mean, prepared.normalisation.std), want)
        assert _raw(b["target"][i:i + 1], prepared.normalisation.mean, prepared.normalisation.std)[0] == x[local]
        ref = local if context == "target" else max(local - 240, labels[0][0])
        p, pv, nx, position = _source_context(labels, ref)
        assert (int(b["phone"][i]), int(b["prev_phone"][i]), int(b["next_phone"][i])) == (p, pv, nx)
        assert abs(float(b["position"][i]) - position) < 1e-6


def test_the_waveform_is_the_memory_map_itself_shared_by_train_and_valid(demo_prepared):
    """No copy per process: the default tensor is a view of the file's memory map (pages the
    OS shares between DDP ranks), made without torch's read-only warning; in_memory=True is a
    private copy with the same values."""
    p = PreparedDataset(demo_prepared)
    assert isinstance(p.wave, np.memmap) and p.wave.mode == "r"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mapped = p.wave_tensor()
    assert mapped.data_ptr() == p.wave.__array_interface__["data"][0] and len(mapped) == len(p.wave)
    copy = p.wave_tensor(in_memory=True)
    assert copy.data_ptr() != mapped.data_ptr() and torch.equal(copy, mapped)
    for in_memory in (False, True):
        train = NextSampleDataset(p, "train", in_memory=in_memory)
        valid = NextSampleDataset(p, "valid", in_memory=in_memory)
        assert p.wave_tensor(in_memory) is (copy if in_memory else mapped)  # one tensor for both splits
        for ds in (train, valid):  # the right windows for both splits
            idx = torch.tensor([0, len(ds) - 1])
            b = ds.get_batch(idx)
            raw = np.asarray(p.wave)
            for row, tt in enumerate(ds.locate(idx)[0].tolist()):
                np.testing.assert_allclose(b["window"][row].numpy(), p.normalisation.normalise(raw[tt - ds.window: tt]), atol=1e-5)
