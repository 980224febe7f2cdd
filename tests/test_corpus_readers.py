"""Corpus layouts (TIMIT LDC in any letter case, NLTK, plain, Festival/ARCTIC .lab), audio
reading (NIST SPHERE / RIFF sniffed, resampling, multi-channel, truncation) and labels."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from data_prep.audio import AudioError, read_audio, sniff
from data_prep.corpus import CorpusError, discover, read_labels
from data_prep.sequences import segment_table


# ------------------------------------------------------------------------------ layouts
def test_demo_corpus_timit_layout(demo_corpus):
    utts, problems = discover(demo_corpus)
    assert problems == [] and len(utts) == 36
    assert {u.layout for u in utts} == {"timit"}
    by_spk = {}
    for u in utts:
        by_spk.setdefault(u.speaker, []).append(u)
    assert sorted(by_spk) == ["FSLT0", "MKAL0", "MKED0"]
    u = next(u for u in utts if u.id == "MKED0_SX111")
    assert (u.sex, u.dialect, u.utt_type, u.corpus_split) == ("M", "DR3", "SX", "test")
    assert u.labels.endswith("SX111.PHN")
    f = next(u for u in utts if u.speaker == "FSLT0")
    assert (f.sex, f.dialect, f.corpus_split) == ("F", "DR2", "train")
    assert {u.utt_type for u in by_spk["MKAL0"]} == {"SA", "SI", "SX"}
    assert all(sniff(u.audio) == "nist" for u in utts)


FAKE_FESTIVAL = r"""#!{python}
# Stands in for `festival -b FILE.scm`: each (demo-synth TEXT WAV LAB) call writes noise as
# RIFF and Festival-style labels (pau, two phones a word, a breath after the first, pau;
# then the words).
import re, sys
import numpy as np, soundfile as sf
for text, wav, lab in re.findall(r'\(demo-synth "([^"]*)" "([^"]*)" "([^"]*)"\)', open(sys.argv[2]).read()):
    words = [w.strip(".,") for w in text.split()]
    segs, rows, t = [("pau", 0.1)], [], 0.1
    for i, w in enumerate(words):
        if i == 1:
            segs.append(("brth", t + 0.05))
            t += 0.05
        rows.append(f"W\t{{w}}\t{{t:f}}\t{{t + 0.2:f}}")
        segs += [("s", t + 0.1), ("aa", t + 0.2)]
        t += 0.2
    segs.append(("pau", t + 0.1))
    n = round((t + 0.1) * 16000)
    sf.write(wav, np.random.default_rng(len(text)).normal(0, 3000, n).astype(np.int16), 16000, format="WAV")
    with open(lab, "w") as f:
        f.write("".join(f"S\t{{p}}\t{{e:f}}\n" for p, e in segs) + "\n".join(rows) + "\nE\n")
"""


def _demo_script():
    import importlib.util
    import sys

    from data_prep import DEMO_CORPUS

    path = DEMO_CORPUS.parent.parent / "scripts" / "make_demo_corpus.py"
    spec = importlib.util.spec_from_file_location("make_demo_corpus", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_demo_corpus_script_writes_a_readable_corpus_with_the_shipped_notice(corpora, tmp_path, demo_corpus):
    """scripts/make_demo_corpus.py with a stand-in Festival: a TIMIT-layout corpus whose
    NOTICE is the shipped one; a failing Festival leaves that corpus as it was."""
    import sys

    fake = tmp_path / "festival"
    fake.write_text(FAKE_FESTIVAL.format(python=sys.executable))
    fake.chmod(0o755)
    out = tmp_path / "corpora" / "demo"
    script = _demo_script()
    assert script.main(["--out", str(out), "--festival", str(fake)]) == 0
    assert (out / "NOTICE").read_bytes() == (demo_corpus / "NOTICE").read_bytes()
    utts, problems = discover(out)
    assert problems == [] and len(utts) == 36 and {u.layout for u in utts} == {"timit"}
    labels = {lab for u in utts for _, _, lab in corpora.parse_phn(u.labels)}
    assert labels == {"h#", "s", "aa", "pau"}  # the breath -> pau, the edges -> h#
    before = sorted((p.relative_to(out), p.stat().st_size) for p in out.rglob("*"))
    assert script.main(["--out", str(out), "--festival", "/bin/false"]) == 1
    assert sorted((p.relative_to(out), p.stat().st_size) for p in out.rglob("*")) == before
    assert [p.name for p in out.parent.iterdir()] == ["demo"]  # no staging directory left


@pytest.mark.parametrize("lower", [False, True])
@pytest.mark.parametrize("fmt", ["NIST", "WAV"])
def test_timit_any_case_any_header(corpora, tmp_path, lower, fmt):
    """LDC layout in upper or lower case; .WAV holding NIST SPHERE or RIFF (sniffed)."""
    corpora.timit_corpus(tmp_path, lower=lower, fmt=fmt, utts=("SA1", "SX10"))
    utts, problems = discover(tmp_path)
    assert problems == []
    assert [u.id for u in utts] == ["FABC0_SA1", "FABC0_SX10", "MDEF0_SA1", "MDEF0_SX10",
                                    "MGHI0_SA1", "MGHI0_SX10"]
    assert {u.layout for u in utts} == {"timit"}
    u = utts[-1]
    assert (u.speaker, u.sex, u.dialect, u.utt_type, u.corpus_split) == ("MGHI0", "M", "DR3", "SX", "test")
    assert sniff(u.audio) == ("nist" if fmt == "NIST" else "riff")
    wave, sr = read_audio(u.audio)
    assert sr == 16000 and wave.dtype == np.int16 and len(wave) == corpora.parse_phn(u.labels)[-1][1]


def test_timit_mixed_case(corpora, tmp_path):
    d = tmp_path / "Train" / "dr4" / "Fxyz1"
    corpora.write_utterance(d, "Si2000", wav_ext=".Wav", phn_ext=".pHn")
    (utt,), problems = discover(tmp_path)
    assert problems == []
    assert (utt.id, utt.speaker, utt.dialect, utt.utt_type, utt.corpus_split, utt.sex) == (
        "FXYZ1_SI2000", "FXYZ1", "DR4", "SI", "train", "F")


def test_nltk_layout_synthetic(corpora, tmp_path):
    corpora.write_utterance(tmp_path / "dr1-fvmh0", "sa1", wav_ext=".wav", phn_ext=".phn", fmt="WAV")
    corpora.write_utterance(tmp_path / "dr2-mbjk0", "sx9", wav_ext=".wav", phn_ext=".phn", fmt="NIST")
    (tmp_path / "README").write_text("not audio")
    utts, problems = discover(tmp_path)
    assert problems == []
    assert [(u.id, u.layout, u.speaker, u.sex, u.dialect, u.utt_type, u.corpus_split) for u in utts] == [
        ("FVMH0_SA1", "nltk", "FVMH0", "F", "DR1", "SA", None),
        ("MBJK0_SX9", "nltk", "MBJK0", "M", "DR2", "SX", None),
    ]


def test_nltk_timit_sample(timit_sample):
    utts, problems = discover(timit_sample)
    assert problems == [] and len(utts) == 120
    assert {u.layout for u in utts} == {"nltk"}
    spk = {u.speaker for u in utts}
    assert len(spk) == 12 and "MCPM0" in spk
    assert {u.dialect for u in utts} == {f"DR{i}" for i in range(1, 9)}
    assert {u.sex for u in utts} == {"F", "M"}
    u = next(u for u in utts if u.id == "MCPM0_SA1")
    wave, sr = read_audio(u.audio)
    assert sr == 16000 and sniff(u.audio) == "riff"
    x, _ = sf.read(u.audio, dtype="int16")
    assert np.array_equal(wave, x)
    segs = read_labels(u.labels, "phn", 16000, 16000)
    assert segs[0][:3] == (0, 2255, "h#") and segs[0][3] == 1


def test_plain_folder(corpora, tmp_path):
    corpora.write_utterance(tmp_path, "one", wav_ext=".wav", phn_ext=".phn", fmt="WAV")
    corpora.write_utterance(tmp_path / "sub", "two", wav_ext=".wav", phn_ext=".phn", fmt="NIST")
    corpora.write_audio(tmp_path / "three.wav", corpora.signal(1000), fmt="WAV")  # no labels
    utts, problems = discover(tmp_path)
    assert [(u.id, u.layout, u.speaker) for u in utts] == [
        ("one", "plain", None), ("sub_two", "plain", "sub"), ("three", "plain", None)]
    assert utts[2].labels is None
    assert len(problems) == 1 and "three.wav" in problems[0] and "no phone label file" in problems[0]


LAB = """separator ;
nfields 3
#
    0.025000 125 pau
    0.087500 125 hh
    0.140000 125 ah
    0.200000 125 pau
"""


@pytest.mark.parametrize("voice", ["cmu_us_slt_arctic", "kal_voice"])
def test_arctic_lab_layout(corpora, tmp_path, voice):
    x = corpora.signal(3300)
    corpora.write_audio(tmp_path / voice / "wav" / "arctic_a0001.wav", x, fmt="WAV")
    (tmp_path / voice / "lab").mkdir()
    (tmp_path / voice / "lab" / "arctic_a0001.lab").write_text(LAB)
    (tmp_path / voice / "etc").mkdir()
    (tmp_path / voice / "etc" / "txt.done.data").write_text('( arctic_a0001 "hello" )\n')
    (u,), problems = discover(tmp_path)
    assert problems == []
    speaker = "slt" if voice.startswith("cmu") else voice
    assert (u.layout, u.speaker, u.id, u.label_format) == ("arctic", speaker, f"{speaker}_arctic_a0001", "lab")
    segs = read_labels(u.labels, "lab", 16000, 16000)
    assert [s[:3] for s in segs] == [(0, 400, "pau"), (400, 1400, "hh"), (1400, 2240, "ah"), (2240, 3200, "pau")]
    assert [s[3] for s in segs] == [4, 5, 6, 7]  # line numbers in the file


def test_arctic_lab_without_header_with_hash_label(tmp_path):
    p = tmp_path / "x.lab"
    p.write_text("0.01 125 h#\n0.02 125 aa\n")
    assert [s[:3] for s in read_labels(p, "lab", 16000, 16000)] == [(0, 160, "h#"), (160, 320, "aa")]


def test_arctic_lab_case_insensitive(corpora, tmp_path):
    corpora.write_audio(tmp_path / "v" / "WAV" / "A1.WAV", corpora.signal(3300), fmt="NIST")
    (tmp_path / "v" / "Lab").mkdir()
    (tmp_path / "v" / "Lab" / "a1.LAB").write_text(LAB)
    (u,), problems = discover(tmp_path)
    assert problems == [] and u.layout == "arctic" and u.labels.endswith("a1.LAB")


def test_duplicate_ids_are_an_error(corpora, tmp_path):
    corpora.write_utterance(tmp_path / "dr1-fabc0", "sa1", wav_ext=".wav", phn_ext=".phn")
    corpora.write_utterance(tmp_path / "x" / "dr1-fabc0", "sa1", wav_ext=".wav", phn_ext=".phn")
    with pytest.raises(CorpusError, match="FABC0_SA1 also used by"):
        discover(tmp_path)


def test_missing_corpus_dir(tmp_path):
    with pytest.raises(CorpusError, match="nope: corpus directory does not exist"):
        discover(tmp_path / "nope")


# -------------------------------------------------------------------------------- audio
@pytest.mark.parametrize("fmt", ["NIST", "WAV"])
@pytest.mark.parametrize("name", ["a.wav", "a.WAV", "a.sph"])
def test_read_audio_sniffs_header(corpora, tmp_path, fmt, name):
    x = corpora.signal(5000, seed=3)
    corpora.write_audio(tmp_path / name, x, fmt=fmt)
    assert sniff(tmp_path / name) == ("nist" if fmt == "NIST" else "riff")
    wave, sr = read_audio(tmp_path / name)
    assert sr == 16000 and wave.dtype == np.int16 and np.array_equal(wave, x)


@pytest.mark.parametrize("rate,fmt", [(8000, "WAV"), (22050, "NIST")])
def test_resampling_to_16k(corpora, tmp_path, rate, fmt):
    t = np.arange(rate) / rate  # one second of 440 Hz
    x = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
    corpora.write_audio(tmp_path / "a.wav", x, sr=rate, fmt=fmt)
    wave, file_rate = read_audio(tmp_path / "a.wav", 16000, resample=True)
    assert file_rate == rate and wave.dtype == np.int16
    assert abs(len(wave) - 16000) <= 1
    ref = (np.sin(2 * np.pi * 440 * np.arange(len(wave)) / 16000) * 8000)
    mid = slice(200, -200)
    assert np.sqrt(np.mean((wave[mid] - ref[mid]) ** 2)) < 80  # < 1 % of the amplitude
    with pytest.raises(AudioError, match=rf"a\.wav: sample rate {rate} Hz, expected 16000 Hz"):
        read_audio(tmp_path / "a.wav", 16000, resample=False)


def test_label_boundaries_scaled_with_file_rate(corpora, tmp_path):
    p = corpora.write_phn(tmp_path / "a.phn", [(0, 800, "h#"), (800, 1700, "aa"), (1700, 2205, "h#")])
    assert [s[:2] for s in read_labels(p, "phn", 8000, 16000)] == [(0, 1600), (1600, 3400), (3400, 4410)]
    assert [s[:2] for s in read_labels(p, "phn", 22050, 16000)] == [(0, 580), (580, 1234), (1234, 1600)]


@pytest.mark.parametrize("fmt", ["NIST", "WAV"])
def test_multichannel_refused(corpora, tmp_path, fmt):
    corpora.write_audio(tmp_path / "st.wav", np.stack([corpora.signal(1000), corpora.signal(1000, 1)], 1), fmt=fmt)
    with pytest.raises(AudioError, match=r"st\.wav: 2 channels; only mono audio is supported"):
        read_audio(tmp_path / "st.wav")


@pytest.mark.parametrize("fmt", ["NIST", "WAV"])
@pytest.mark.parametrize("cut", [1, 1001])
def test_truncated_audio(corpora, tmp_path, fmt, cut):
    corpora.write_audio(tmp_path / "a.wav", corpora.signal(4000), fmt=fmt)
    data = (tmp_path / "a.wav").read_bytes()
    (tmp_path / "t.wav").write_bytes(data[:-cut])
    with pytest.raises(AudioError, match=r"t\.wav: truncated: header says 4000 samples"):
        read_audio(tmp_path / "t.wav")


@pytest.mark.parametrize("content", [b"", b"hello, not audio at all" * 10, b"NIST_1A\n   1024\nnonsense"])
def test_unreadable_audio(tmp_path, content):
    (tmp_path / "bad.wav").write_bytes(content)
    with pytest.raises(AudioError, match=r"bad\.wav: (unreadable audio|no audio samples)"):
        read_audio(tmp_path / "bad.wav")


def test_missing_audio(tmp_path):
    with pytest.raises(AudioError, match=r"gone\.wav: audio file does not exist"):
        read_audio(tmp_path / "gone.wav")


# ------------------------------------------------------------------------------- labels
def _segments(path, label_format):
    """Labels as ``prepare`` checks them: read, then turned into segments (empty, negative, overlap)."""
    raw = read_labels(path, label_format, 16000, 16000)
    return segment_table(((a, b, lab, f"{path}:{n}") for a, b, lab, n in raw), lambda label: 0, 1)


@pytest.mark.parametrize("lines,msg", [
    (["0 100 h#", "100 200"], r"x\.phn:2: expected 'start end phone'"),
    (["0 100 h#", "100 2x0 aa"], r"x\.phn:2: start and end must be integers"),
    (["0 100 h#", "", "90 200 aa"], r"x\.phn:3: segment starts at 90, before the previous one ends \(100\): overlap"),
    (["0 100 h#", "100 100 aa"], r"x\.phn:2: segment \[100, 100\) is empty or negative"),
    (["0 100 h#", "200 150 aa"], r"x\.phn:2: segment \[200, 150\) is empty"),
    (["-5 100 h#"], r"x\.phn:1: segment \[-5, 100\)"),
    ([""], r"x\.phn: no phone segments"),
])
def test_bad_phn_lines(corpora, tmp_path, lines, msg):
    p = corpora.write_phn(tmp_path / "x.phn", lines)
    with pytest.raises(CorpusError, match=msg):
        _segments(p, "phn")


def test_bad_lab_lines(tmp_path):
    p = tmp_path / "x.lab"
    p.write_text("#\n0.1 125 pau\nabc 125 aa\n")
    with pytest.raises(CorpusError, match=r"x\.lab:3: end time must be a number"):
        _segments(p, "lab")
    p.write_text("#\n0.2 125 pau\n0.1 125 aa\n")
    with pytest.raises(CorpusError, match=r"x\.lab:3: segment \[3200, 1600\)"):
        _segments(p, "lab")


def test_missing_label_file(tmp_path):
    with pytest.raises(CorpusError, match=r"nope\.phn: cannot read label file"):
        read_labels(tmp_path / "nope.phn", "phn", 16000, 16000)


def test_hidden_files_and_folders_ignored(corpora, tmp_path):
    """macOS '._X.WAV' companions and the hidden temporary folder of a prepare run."""
    corpora.timit_corpus(tmp_path, speakers=(("TRAIN", "DR1", "FABC0"),), utts=("SA1",))
    spk = tmp_path / "TRAIN" / "DR1" / "FABC0"
    (spk / "._SA1.WAV").write_bytes(b"\x00\x05\x16\x07 mac resource fork")
    corpora.write_utterance(tmp_path / ".out.tmp-123", "x", wav_ext=".wav", phn_ext=".phn")
    utts, problems = discover(tmp_path)
    assert [u.id for u in utts] == ["FABC0_SA1"] and problems == []


def test_converted_copy_beside_the_original_is_passed_over(corpora, tmp_path):
    """Some TIMIT copies hold SA1.WAV.wav (RIFF) beside SA1.WAV (SPHERE) + SA1.PHN."""
    d = tmp_path / "TIMIT" / "TRAIN" / "DR1" / "FABC0"
    d.mkdir(parents=True)
    x, _ = corpora.write_utterance(d, "SA1")
    corpora.write_audio(d / "SA1.WAV.wav", x, fmt="WAV")
    utts, problems = discover(tmp_path / "TIMIT")
    assert [u.id for u in utts] == ["FABC0_SA1"]
    assert utts[0].audio.endswith("SA1.WAV") and utts[0].labels.endswith("SA1.PHN")
    assert len(problems) == 1 and "SA1.WAV.wav" in problems[0] and "converted copy" in problems[0]
    # a stray audio file with no original beside it is still a missing-label problem
    corpora.write_audio(d / "SX9.WAV.wav", x, fmt="WAV")
    utts, problems = discover(tmp_path / "TIMIT")
    assert len(utts) == 2 and any("SX9.WAV.wav: no phone label file" in p for p in problems)
