"""Audio reading: NIST SPHERE or RIFF (sniffed from the header, not the extension).

Everything is returned as mono int16 at the requested sample rate. Audio at another rate
is resampled (``torchaudio.functional.resample``) or refused, by choice; multi-channel
audio is refused. Truncated files are detected by comparing the header's sample count
with what can be read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from .audio_io import float_to_int16
from .errors import InputError


class AudioError(InputError):
    """Audio that cannot be used; the message names the file."""


class ResamplerUnavailableError(InputError, RuntimeError):
    """torchaudio (the resampler) cannot be loaded: an install problem, not a bad file.

    Raised only when a file at another sample rate needs resampling; a corpus at the
    target rate never imports torchaudio.
    """


def installed_version(name: str) -> str:
    """A distribution's installed version from its metadata (nothing is imported), or \"not installed\"."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def resample_int16(data: np.ndarray, from_rate: int, to_rate: int, path: str | Path = "") -> np.ndarray:
    """float32 samples at ``from_rate`` -> int16 at ``to_rate`` (``torchaudio.functional.resample``).

    torchaudio's compiled extension only loads beside the torch build it was made for; a
    mismatched pair (e.g. torchaudio 2.11.1 with torch 2.11.0) raises
    :class:`ResamplerUnavailableError` with the versions and the fix, not an OSError.
    """
    import torch

    try:
        import torchaudio.functional as AF

        y = AF.resample(torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32)), from_rate, to_rate)
    except (ImportError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
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
    if head[:4] in (b"RIFF", b"RIFX", b"RF64") and head[8:12] == b"WAVE":
        return "riff"
    return "other"


def _nist_header(path: Path) -> dict[str, str]:
    with open(path, "rb") as f:
        head = f.read(1024)
    fields = {}
    for line in head.decode("ascii", "replace").splitlines()[2:]:
        parts = line.split(None, 2)
        if not parts or parts[0] == "end_head":
            break
        if len(parts) == 3:
            fields[parts[0]] = parts[2]
    return fields


def _riff_frames(path: Path) -> int | None:
    """Frames the RIFF header promises (data chunk size / block align), or None when it
    does not say (streamed files with a size of 0 or 0xFFFFFFFF, RF64).

    libsndfile silently shortens a truncated RIFF file to the bytes present, so the header
    is read here to detect truncation.
    """
    import struct

    with open(path, "rb") as f:
        head = f.read(12)
        endian = ">" if head[:4] == b"RIFX" else "<"
        if head[:4] == b"RF64":
            return None
        block_align = None
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                return None
            cid, size = chunk[:4], struct.unpack(endian + "I", chunk[4:])[0]
            if cid == b"fmt ":
                fmt = f.read(size + (size & 1))
                if len(fmt) >= 14:
                    block_align = struct.unpack(endian + "H", fmt[12:14])[0]
            elif cid == b"data":
                if not block_align or size in (0, 0xFFFFFFFF):
                    return None
                return size // block_align
            else:
                f.seek(size + (size & 1), 1)


def audio_info(path: str | Path) -> tuple[int, int, int]:
    """(frames, sample_rate, channels) from the header, with a clear error."""
    path = Path(path)
    try:
        info = sf.info(str(path))
    except Exception as e:  # soundfile raises several types
        raise AudioError(f"{path}: unreadable audio ({e})") from None
    return info.frames, info.samplerate, info.channels


def read_audio(
    path: str | Path, sample_rate: int = 16000, resample: bool = True
) -> tuple[np.ndarray, int]:
    """Mono int16 samples of ``path`` at ``sample_rate``, and the file's own sample rate
    (label files counted in samples are at that rate).

    Raises :class:`AudioError` (naming the file) for unreadable, truncated, compressed
    SPHERE, multi-channel, or (with ``resample=False``) wrong-rate audio.
    """
    path = Path(path)
    kind = sniff(path) if path.is_file() else "missing"
    if kind == "missing":
        raise AudioError(f"{path}: audio file does not exist")
    expected = None
    if kind == "nist":
        hdr = _nist_header(path)
        coding = hdr.get("sample_coding", "pcm")
        if "shorten" in coding or "wavpack" in coding:
            raise AudioError(
                f"{path}: NIST SPHERE with {coding} compression is not supported; "
                "decompress it first (e.g. with sph2pipe)"
            )
        if "sample_count" in hdr:
            expected = int(hdr["sample_count"])
    try:
        with sf.SoundFile(str(path)) as f:
            sr, channels = f.samplerate, f.channels
            if channels != 1:
                raise AudioError(f"{path}: {channels} channels; only mono audio is supported")
            data = f.read(dtype="int16" if sr == sample_rate else "float32", always_2d=False)
    except AudioError:
        raise
    except Exception as e:
        raise AudioError(f"{path}: unreadable audio ({e})") from None
    if expected is not None and len(data) < expected:
        raise AudioError(
            f"{path}: truncated: header says {expected} samples, file holds {len(data)}"
        )
    if kind == "riff":
        expected = _riff_frames(path)
        if expected is not None and len(data) < expected:
            raise AudioError(
                f"{path}: truncated: header says {expected} samples, file holds {len(data)}"
            )
    if len(data) == 0:
        raise AudioError(f"{path}: no audio samples")
    if sr != sample_rate:
        if not resample:
            raise AudioError(
                f"{path}: sample rate {sr} Hz, expected {sample_rate} Hz "
                "(allow resampling, or convert the corpus first)"
            )
        data = resample_int16(data, sr, sample_rate, path)
    return np.ascontiguousarray(data, dtype=np.int16), sr
