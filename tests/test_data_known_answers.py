"""Prepared data against the corpus files it came from, and the example index's edges.

The demo corpus is TIMIT-layout at 16 kHz with the 61-phone set: a prepared sequence's
samples are the WAV file's, its segment table the .PHN file's lines (phone ids = positions
in ``phones``; the previous / next phone of the ends: ``no_phone``). The dataset's example
``i`` of sequence ``s`` (pad "skip") is the window ``wave[i : i + W]`` and target
``wave[i + W]``; indices outside ``[0, len)`` are errors.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from data_prep import DEMO_CORPUS
from waveform_mdn.data import NextSampleDataset

SPEAKER_DIR = DEMO_CORPUS / "TRAIN" / "DR1" / "MKAL0"


@pytest.mark.parametrize("utt", ["SA1", "SX101"])
def test_sequence_is_the_corpus_files(prepared, utt):
    i = prepared.find(f"MKAL0_{utt}")
    wav, sr = sf.read(str(SPEAKER_DIR / f"{utt}.WAV"), dtype="int16")
    assert sr == prepared.sample_rate
    np.testing.assert_array_equal(prepared.sequence_wave(i), wav)
    lines = [ln.split() for ln in (SPEAKER_DIR / f"{utt}.PHN").read_text().splitlines() if ln.strip()]
    phones = [prepared.phones.index(lab) for _, _, lab in lines]
    expect = [[int(a), int(b), p, prev, nxt] for (a, b, _), p, prev, nxt in
              zip(lines, phones, [prepared.no_phone] + phones[:-1], phones[1:] + [prepared.no_phone])]
    np.testing.assert_array_equal(prepared.sequence_segments(i), np.array(expect))


def test_find_by_id_or_utterance_and_unknown_keys(prepared):
    i = prepared.find("MKAL0_SX101")
    assert prepared.sequences[i]["id"] == "MKAL0_SX101"
    assert prepared.find(prepared.sequences[i]["utterance"]) == i
    with pytest.raises(KeyError, match="no sequence or utterance with id 'MKAL0_NOPE'"):
        prepared.find("MKAL0_NOPE")
    with pytest.raises(ValueError, match="split must be one of .* not 'test'"):
        prepared.sequence_indices("test")


def test_examples_of_chosen_sequences(prepared):
    """``sequences=[j, i]``: the examples of sequence j, then of i, in that order."""
    W = prepared.window
    i, j = prepared.find("MKAL0_SA1"), prepared.find("MKAL0_SX101")
    ds = NextSampleDataset(prepared, sequences=[j, i])
    wj, wi = prepared.sequence_wave(j), prepared.sequence_wave(i)
    assert len(ds) == (len(wj) - W) + (len(wi) - W)
    last_j, first_i = len(wj) - W - 1, len(wj) - W
    b = ds.get_batch(torch.tensor([0, last_j, first_i, len(ds) - 1]))
    norm = prepared.normalisation.normalise
    np.testing.assert_allclose(b["window"][0].numpy(), norm(wj[:W]), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(b["target"].numpy(), norm(np.array([wj[W], wj[-1], wi[W], wi[-1]])),
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(b["window"][2].numpy(), norm(wi[:W]), rtol=1e-6, atol=1e-6)


def test_default_split_is_train_and_indices_out_of_range_are_errors(prepared):
    W = prepared.window
    ds = NextSampleDataset(prepared)
    train = prepared.sequence_indices("train")
    assert ds.split == "train" and ds.seq_indices == train
    assert len(ds) == sum(prepared.sequences[i]["length"] - W for i in train)
    assert ds.prepared is prepared
    for bad in ([len(ds)], [-1], [0, len(ds) + 5]):
        with pytest.raises(IndexError, match=rf"example index out of range \[0, {len(ds)}\)"):
            ds.get_batch(torch.tensor(bad))
    ds.get_batch(torch.tensor([0, len(ds) - 1]))  # the ends themselves are examples
    from_path = NextSampleDataset(str(prepared.path), split="valid")
    assert from_path.seq_indices == prepared.sequence_indices("valid")


def test_in_memory_wave_is_a_private_copy(prepared):
    """``in_memory=True``: the samples copied into this process (not the memory map);
    default: the map itself (no copy)."""
    mapped, private = prepared.wave_tensor(), prepared.wave_tensor(in_memory=True)
    assert private.dtype == mapped.dtype == torch.int16 and torch.equal(private, mapped)
    assert np.shares_memory(mapped.numpy(), prepared.wave)
    assert not np.shares_memory(private.numpy(), prepared.wave)
