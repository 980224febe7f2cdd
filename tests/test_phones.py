"""Phone sets: TIMIT 61, the fold to 39 (q merged into the previous segment), mappings,
and what the per-utterance loader makes of a label sequence (checked against a naive
per-sample reference on real files)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data_prep.corpus import CorpusError, Utterance
from data_prep.phones import (
    DELETED39, FOLD39, MERGE, TIMIT39, TIMIT61, PhoneSet, UnknownPhoneError, parse_phone_map,
)
from data_prep.sequences import load_utterance


def test_inventories():
    assert len(TIMIT61) == len(set(TIMIT61)) == 61
    assert len(TIMIT39) == len(set(TIMIT39)) == 39
    assert "q" in TIMIT61 and "q" not in TIMIT39 and "sil" in TIMIT39
    assert set(FOLD39) <= set(TIMIT61)
    assert set(FOLD39.values()) <= set(TIMIT39)


@pytest.mark.parametrize("name", ["timit61", "timit39"])
def test_ids_are_positions(name):
    ps = PhoneSet(name)
    assert len(ps) == len(ps.symbols) == (61 if name == "timit61" else 39)
    for i, s in enumerate(ps.symbols):
        assert ps.id(s) == i and ps.map_label(s) == s


def test_fold_39_every_timit_symbol():
    ps = PhoneSet("timit39")
    for s in TIMIT61:
        if s in DELETED39:
            assert ps.map_label(s) == MERGE
        else:
            assert ps.map_label(s) == FOLD39.get(s, s)
    assert {ps.map_label(s) for s in TIMIT61} - {MERGE} == set(TIMIT39)
    for s in ("bcl", "h#", "pau", "epi"):
        assert ps.map_label(s) == "sil"
    assert PhoneSet("timit61").map_label("q") == "q"


def test_unknown_label_and_mapping():
    with pytest.raises(UnknownPhoneError, match="'brth'.*timit61"):
        PhoneSet("timit61").map_label("brth")
    with pytest.raises(UnknownPhoneError, match="sil"):
        PhoneSet("timit61").map_label("sil")  # a 39 symbol, not of the 61 set
    assert PhoneSet("timit61", {"brth": "pau"}).map_label("brth") == "pau"
    assert PhoneSet("timit39", {"brth": "pau"}).map_label("brth") == "sil"  # then folded
    assert PhoneSet("timit39", {"sil": "sil"}).map_label("sil") == "sil"
    with pytest.raises(ValueError, match="xyz"):
        PhoneSet("timit61", {"brth": "xyz"})
    with pytest.raises(ValueError, match="unknown phone set"):
        PhoneSet("timit48")


def test_parse_phone_map():
    assert parse_phone_map(None) == {}
    assert parse_phone_map(["brth=pau", "sil = h#, ,ssil=pau"]) == {"brth": "pau", "sil": "h#", "ssil": "pau"}
    with pytest.raises(ValueError, match="LABEL=SYMBOL"):
        parse_phone_map(["brth"])


# ----------------------------------------------------------------- loading label sequences
def _load(corpora, tmp: Path, segs, phone_set="timit61", phone_map=None):
    n = segs[-1][1] + 50
    x = corpora.signal(n, seed=len(segs))
    corpora.write_audio(tmp / "u.wav", x, fmt="WAV")
    corpora.write_phn(tmp / "u.phn", segs)
    u = Utterance(id="u", audio=str(tmp / "u.wav"), labels=str(tmp / "u.phn"), label_format="phn", layout="plain")
    wave, table = load_utterance(u, PhoneSet(phone_set, phone_map), 16000, True)
    return x, wave, table


def _reference(segs, fold):
    """Per-sample symbols from first start to last end: gaps belong to the segment before;
    MERGE samples to the previous real phone (the next one at the start)."""
    first, last = segs[0][0], segs[-1][1]
    lab = [None] * (last - first)
    for k, (a, b, p) in enumerate(segs):
        end = segs[k + 1][0] if k + 1 < len(segs) else b
        for i in range(a, end):
            lab[i - first] = fold(p)
    prev = None
    for i, p in enumerate(lab):  # merge forwards into the previous phone
        if p == MERGE:
            lab[i] = prev
        else:
            prev = p
    nxt = None
    for i in range(len(lab) - 1, -1, -1):  # leading merged samples: the next phone
        if lab[i] is None:
            lab[i] = nxt
        else:
            nxt = lab[i]
    return first, lab


def _check_table(table, n, ps):
    assert table[0, 0] == 0 and table[-1, 1] == n
    assert np.all(table[1:, 0] == table[:-1, 1]) and np.all(table[:, 1] > table[:, 0])
    assert np.all(table[1:, 2] != table[:-1, 2]), "equal neighbours are joined"
    no = len(ps)
    assert table[0, 3] == no and table[-1, 4] == no
    assert np.all(table[1:, 3] == table[:-1, 2]) and np.all(table[:-1, 4] == table[1:, 2])


def test_fold39_merges_q_into_previous(corpora, tmp_path):
    segs = [(0, 100, "h#"), (100, 200, "ix"), (200, 230, "q"), (230, 330, "ae"), (330, 400, "q"),
            (400, 500, "ih"), (500, 600, "h#")]
    x, wave, table = _load(corpora, tmp_path, segs, "timit39")
    ps = PhoneSet("timit39")
    assert np.array_equal(wave, x[:600])
    # each q is merged into the segment before it (ix -> ih, ae); the second ih stays apart
    assert [ps.symbols[i] for i in table[:, 2]] == ["sil", "ih", "ae", "ih", "sil"]
    assert table[:, :2].tolist() == [[0, 100], [100, 230], [230, 400], [400, 500], [500, 600]]
    _, lab = _reference(segs, PhoneSet("timit39").map_label)
    assert [ps.symbols[i] for i in np.repeat(table[:, 2], table[:, 1] - table[:, 0])] == lab


def test_fold39_leading_q_joins_the_next(corpora, tmp_path):
    segs = [(0, 50, "q"), (50, 150, "aa"), (150, 300, "h#")]
    _, wave, table = _load(corpora, tmp_path, segs, "timit39")
    ps = PhoneSet("timit39")
    assert table[:, :3].tolist() == [[0, 150, ps.id("aa")], [150, 300, ps.id("sil")]]
    _, _, table61 = _load(corpora, tmp_path, segs, "timit61")
    assert len(table61) == 3 and table61[0, 2] == PhoneSet().id("q")


def test_only_q_is_an_error(corpora, tmp_path):
    with pytest.raises(CorpusError, match="u.phn: no phone segments left after mapping to timit39"):
        _load(corpora, tmp_path, [(0, 100, "q")], "timit39")


def test_unknown_phone_names_file_and_line(corpora, tmp_path):
    with pytest.raises(CorpusError, match=r"u\.phn:2: unknown phone 'brth'"):
        _load(corpora, tmp_path, [(0, 100, "h#"), (100, 200, "brth"), (200, 300, "h#")])
    _, _, table = _load(corpora, tmp_path, [(0, 100, "h#"), (100, 200, "brth"), (200, 300, "aa")],
                        phone_map={"brth": "pau"})
    assert [PhoneSet().symbols[i] for i in table[:, 2]] == ["h#", "pau", "aa"]


SYMS = st.sampled_from(["aa", "ao", "ix", "ih", "q", "h#", "pau", "bcl", "s", "z"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layout=st.lists(st.tuples(st.integers(0, 3), st.integers(1, 20), SYMS), min_size=1, max_size=12),
       phone_set=st.sampled_from(["timit61", "timit39"]))
def test_loaded_labels_match_per_sample_reference(corpora, layout, phone_set):
    """Random label sequences (gaps, q anywhere, folds making equal neighbours): every
    sample's phone is the naive reference's, and the table is consistent."""
    ps = PhoneSet(phone_set)
    segs, a = [], 0
    for gap, n, p in layout:
        a += gap
        segs.append((a, a + n, p))
        a += n
    if all(ps.map_label(p) == MERGE for _, _, p in segs):
        return
    with tempfile.TemporaryDirectory() as d:
        x, wave, table = _load(corpora, Path(d), segs, phone_set)
    first, lab = _reference(segs, ps.map_label)
    assert np.array_equal(wave, x[first:segs[-1][1]])
    assert [ps.symbols[i] for i in np.repeat(table[:, 2], table[:, 1] - table[:, 0])] == lab
    _check_table(table, len(wave), ps)
