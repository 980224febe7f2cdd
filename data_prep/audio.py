"""Reading audio as mono int16 at the requested rate: NIST SPHERE or RIFF, sniffed from the
header; truncation is detected against the header's sample count (docs/data.md)."""

from __future__ import annotations

import struct
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import soundfile as sf

from .audio_io import float_to_int16
from .errors import InputError


class AudioError(InputError):
    """Audio that cannot be used (a bad utterance: ``--skip-bad`` skips it)."""


class ResamplerUnavailableError(InputError, RuntimeError):
    """torchaudio (the resampler) cannot be loaded: an install problem, not a bad file."""


def installed_version(name: str) -> str:
    """A distribution's version from its metadata (nothing imported), or "not installed"."""
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def resample_int16(data: np.ndarray, from_rate: int, to_rate: int, path: str | Path = "") -> np.ndarray:
    """float32 samples at ``from_rate`` -> int16 at ``to_rate`` (``torchaudio.functional.resample``).
    torch is imported only here: a corpus at the target rate never needs it."""
    import torch

    try:
        import torchaudio.functional as AF

        y = AF.resample(torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32)), from_rate, to_rate)
    except (ImportError, OSError) as e:  # a torchaudio built for another torch fails to load
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ResamplerUnavailableError(
            f"{path}: resampling {from_rate} Hz -> {to_rate} Hz needs torchaudio, which could not be "
            f"loaded ({first}); installed: torch {installed_version('torch')}, "
            f"torchaudio {installed_version('torchaudio')}; install the pinned pair: pip install -e ."
        ) from None
    return float_to_int16(y.numpy())[0]


def sniff(path: str | Path) -> str:
    """'nist', 'riff', or 'other', from the first bytes of the file."""
    with open(path, "rb") as f:
        head = f.read(12)
    if head.startswith(b"NIST_1A"):
        return "nist"
    return "riff" if head[:4] in (b"RIFF", b"RIFX", b"RF64") and head[8:12] == b"WAVE" else "other"


def _nist_header(path: Path) -> dict[str, str]:
    with open(path, "rb") as f:
        lines = f.read(1024).decode("ascii", "replace").splitlines()[2:]
    fields = {}
    for parts in (line.split(None, 2) for line in lines):
        if not parts or parts[0] == "end_head":
            break
        if len(parts) == 3:
            fields[parts[0]] = parts[2]
    return fields


def _riff_frames(path: Path) -> int | None:
    """Frames the RIFF header promises, or None when it does not say (streamed, RF64):
    libsndfile silently shortens a truncated RIFF file."""
    with open(path, "rb") as f:
        head = f.read(12)
        endian, block_align = (">" if head[:4] == b"RIFX" else "<"), None
        while head[:4] != b"RF64" and len(chunk := f.read(8)) == 8:
            cid, size = chunk[:4], struct.unpack(endian + "I", chunk[4:])[0]
            if cid == b"data":
                return size // block_align if block_align and size not in (0, 0xFFFFFFFF) else None
            if cid == b"fmt ":
                fmt = f.read(size + (size & 1))
                block_align = struct.unpack(endian + "H", fmt[12:14])[0] if len(fmt) >= 14 else None
            else:
                f.seek(size + (size & 1), 1)
    return None


def read_audio(path: str | Path, sample_rate: int = 16000, resample: bool = True) -> tuple[np.ndarray, int]:
    """Mono int16 samples of ``path`` at ``sample_rate``, and the file's own rate (the unit of
    its label file). Raises :class:`AudioError` for unreadable, truncated, compressed SPHERE,
    multi-channel, or (``resample=False``) wrong-rate audio."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: audio file does not exist")
    kind, expected = sniff(path), None
    if kind == "nist":
        hdr = _nist_header(path)
        coding = hdr.get("sample_coding", "pcm")
        if "shorten" in coding or "wavpack" in coding:
            raise AudioError(f"{path}: NIST SPHERE with {coding} compression is not supported; "
                             "decompress it first (e.g. with sph2pipe)")
        expected = int(hdr["sample_count"]) if "sample_count" in hdr else None
    elif kind == "riff":
        expected = _riff_frames(path)
    try:
        with sf.SoundFile(str(path)) as f:
            sr, channels = f.samplerate, f.channels
            data = f.read(dtype="int16" if sr == sample_rate else "float32", always_2d=False)
    except Exception as e:
        raise AudioError(f"{path}: unreadable audio ({e})") from None
    if channels != 1:
        raise AudioError(f"{path}: {channels} channels; only mono audio is supported")
    if expected is not None and len(data) < expected:
        raise AudioError(f"{path}: truncated: header says {expected} samples, file holds {len(data)}")
    if len(data) == 0:
        raise AudioError(f"{path}: no audio samples")
    if sr != sample_rate:
        if not resample:
            raise AudioError(f"{path}: sample rate {sr} Hz, expected {sample_rate} Hz "
                             "(allow resampling, or convert the corpus first)")
        data = resample_int16(data, sr, sample_rate, path)
    return np.ascontiguousarray(data, dtype=np.int16), sr
