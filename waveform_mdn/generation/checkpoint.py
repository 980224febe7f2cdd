"""The model for generation: a checkpoint loaded with one-line errors, and the check that
the prepared data is the data it was trained on (phone set, ids, fingerprint)."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from ..data import PreparedDataset
from .batching import hparam
from .inputs import GenerationError


def load_model(ckpt: str | Path, device: str = "cpu"):
    """``WaveformPredictor`` of a Lightning checkpoint, in eval mode; a missing, truncated
    or foreign file is a :class:`GenerationError` naming it."""
    from .. import models

    ckpt = Path(ckpt)
    if not ckpt.is_file():
        raise GenerationError(f"{ckpt}: checkpoint not found")
    try:
        model = models.WaveformPredictor.load_from_checkpoint(str(ckpt), map_location=device)
    except Exception as e:  # noqa: BLE001  (torch raises many kinds for damaged files)
        reason = f"no {e.args[0]!r} in it" if isinstance(e, KeyError) and e.args else str(e).strip()
        reason = (reason.splitlines() or [type(e).__name__])[0].split(". ")[0][:160]
        raise GenerationError(f"{ckpt}: not a readable WaveformPredictor checkpoint ({reason})") from None
    if model.net is None:
        raise GenerationError(f"{ckpt}: the checkpoint has no network (window / n_phone_ids unset)")
    return model.eval()


def check_data(model: nn.Module, prepared: PreparedDataset, allow_different: bool) -> list[str]:
    """Refuse data whose phone ids mean other phones; refuse (or, with ``allow_different``,
    note) other data than the checkpoint's. Returns the notes."""
    notes = []
    phones = hparam(model, "phones")
    if phones is not None and list(phones) != list(prepared.phones):
        raise GenerationError(f"{prepared.path}: its phone set differs from the checkpoint's "
                              "(phone ids would mean other phones)")
    n_ids = hparam(model, "n_phone_ids")
    if n_ids is not None and int(n_ids) != prepared.n_phone_ids:
        raise GenerationError(f"{prepared.path}: {prepared.n_phone_ids} phone ids, the checkpoint has {n_ids}")
    fp = hparam(model, "data_fingerprint")
    if fp is not None and fp != prepared.fingerprint:
        msg = (f"{prepared.path} (fingerprint {prepared.fingerprint}) is not the data the checkpoint was "
               f"trained on ({fp})")
        if not allow_different:
            raise GenerationError(msg + "; pass --allow-different-data to generate anyway")
        notes.append(msg)
    mean, std = hparam(model, "norm_mean"), hparam(model, "norm_std")
    if mean is not None and (abs(mean - prepared.mean) > 1e-9 or abs(std - prepared.std) > 1e-9):
        notes.append(f"normalisation of the checkpoint ({mean:.6g}, {std:.6g}) used, not that of --data "
                     f"({prepared.mean:.6g}, {prepared.std:.6g})")
    return notes
