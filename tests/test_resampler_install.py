"""A broken or missing torchaudio (the resampler) is a one-line install error, and only a
corpus that needs resampling ever touches it. The failure is forced by monkeypatching the
import, not by breaking the install."""

from __future__ import annotations

import sys
import types
from importlib.metadata import version

import pytest

from waveform_mdn.cli import main


def _corpus(corpora, root, rate):
    d = root / f"c{rate}"
    corpora.write_audio(d / "u.wav", corpora.signal(rate, 3), sr=rate, fmt="WAV")
    q = rate // 4
    corpora.write_phn(d / "u.phn", [(0, q, "h#"), (q, 2 * q, "aa"), (2 * q, 3 * q, "s"), (3 * q, rate, "h#")])
    return d


def _prepare(capsys, corpus, out):
    rc = main(["prepare", str(corpus), str(out), "--quiet", "--split", "none"])
    captured = capsys.readouterr()
    return rc, captured.err


def _broken_extension(monkeypatch):
    """torchaudio imports, but its compiled library does not load (the torch/torchaudio
    mismatch seen with torchaudio 2.11.1 beside torch 2.11.0)."""
    fake = types.ModuleType("torchaudio.functional")

    def resample(*args, **kwargs):
        raise OSError("Could not load this library: libtorchaudio.so: undefined symbol: "
                      "torch_exception_get_what_without_backtrace\nmore detail")

    fake.resample = resample
    parent = types.ModuleType("torchaudio")
    parent.functional = fake
    monkeypatch.setitem(sys.modules, "torchaudio", parent)
    monkeypatch.setitem(sys.modules, "torchaudio.functional", fake)


def _missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchaudio", None)  # `import torchaudio` raises ImportError
    monkeypatch.setitem(sys.modules, "torchaudio.functional", None)


@pytest.mark.parametrize("break_it", [_broken_extension, _missing], ids=["broken", "missing"])
def test_resampling_without_torchaudio_is_one_line(corpora, tmp_path, capsys, monkeypatch, break_it):
    corpus = _corpus(corpora, tmp_path, 8000)
    break_it(monkeypatch)
    rc, err = _prepare(capsys, corpus, tmp_path / "out")
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert "Traceback" not in err
    assert str(corpus / "u.wav") in line and "8000 Hz -> 16000 Hz" in line
    assert "torchaudio" in line and "could not be loaded" in line
    assert f"torch {version('torch')}" in line and f"torchaudio {version('torchaudio')}" in line
    assert line.endswith("install the pinned pair: pip install -e .")
    if break_it is _broken_extension:
        assert "undefined symbol" in line and "more detail" not in line
    assert not (tmp_path / "out").exists()  # nothing half-written


@pytest.mark.parametrize("break_it", [_broken_extension, _missing], ids=["broken", "missing"])
def test_16k_corpus_never_loads_torchaudio(corpora, tmp_path, capsys, monkeypatch, break_it):
    corpus = _corpus(corpora, tmp_path, 16000)
    break_it(monkeypatch)
    rc, err = _prepare(capsys, corpus, tmp_path / "out")
    assert rc == 0, err
    assert (tmp_path / "out" / "meta.json").is_file()


def test_16k_prepare_leaves_torchaudio_unimported(corpora, tmp_path):
    """In a fresh interpreter: preparing a 16 kHz corpus imports no torchaudio module."""
    import subprocess

    corpus = _corpus(corpora, tmp_path, 16000)
    code = (
        "import sys; from waveform_mdn.cli import main; "
        f"rc = main(['prepare', {str(corpus)!r}, {str(tmp_path / 'out')!r}, '--quiet', '--split', 'none']); "
        "loaded = sorted(m for m in sys.modules if m.startswith('torchaudio')); "
        "print('LOADED', loaded); sys.exit(rc)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "LOADED []" in res.stdout


def test_versions_line_names_the_installed_pair(capsys):
    assert main(["versions"]) == 0
    out = capsys.readouterr().out.strip()
    assert len(out.splitlines()) == 1
    for name in ("torch", "torchaudio", "pytorch-lightning", "librosa", "soundfile", "numpy"):
        assert f" {name} {version(name)}" in out, out
