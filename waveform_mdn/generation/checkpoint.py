"""The model for generation: a checkpoint loaded with one-line errors, and the check that
the prepared data is the data it was trained on."""

from __future__ import annotations

from pathlib import Path

from ..data import PreparedDataset
from .settings import GenerationError


def load_model(ckpt: str | Path, prepared: PreparedDataset, device: str = "cpu",
               allow_different: bool = False) -> tuple[object, dict, list[str]]:
    """(the ``WaveformPredictor`` of a Lightning checkpoint in eval mode, its hyperparameters,
    notes) after :func:`check_data`; a missing, truncated or foreign file is a
    :class:`GenerationError` naming it."""
    from ..models import WaveformPredictor

    ckpt = Path(ckpt)
    if not ckpt.is_file():
        raise GenerationError(f"{ckpt}: checkpoint not found")
    try:
        model = WaveformPredictor.load_from_checkpoint(str(ckpt), map_location=device)
    except Exception as e:  # noqa: BLE001  (torch raises many kinds for damaged files)
        reason = f"no {e.args[0]!r} in it" if isinstance(e, KeyError) and e.args else str(e).strip()
        reason = (reason.splitlines() or [type(e).__name__])[0].split(". ")[0][:160]
        raise GenerationError(f"{ckpt}: not a readable WaveformPredictor checkpoint ({reason})") from None
    if model.net is None:
        raise GenerationError(f"{ckpt}: the checkpoint has no network (window / n_phone_ids unset)")
    hp = dict(model.hparams)
    return model.eval(), hp, check_data(hp, prepared, allow_different)


def check_data(hp: dict, prepared: PreparedDataset, allow_different: bool) -> list[str]:
    """Refuse data whose phone ids mean other phones (``hp``: the model's hyperparameters);
    refuse (or, with ``allow_different``, note) other data than the checkpoint's."""
    notes = []
    if hp.get("phones") is not None and list(hp["phones"]) != list(prepared.phones):
        raise GenerationError(f"{prepared.path}: its phone set differs from the checkpoint's "
                              "(phone ids would mean other phones)")
    if hp.get("n_phone_ids") is not None and int(hp["n_phone_ids"]) != prepared.n_phone_ids:
        raise GenerationError(f"{prepared.path}: {prepared.n_phone_ids} phone ids, the checkpoint has "
                              f"{hp['n_phone_ids']}")
    fp = hp.get("data_fingerprint")
    if fp is not None and fp != prepared.fingerprint:
        msg = (f"{prepared.path} (fingerprint {prepared.fingerprint}) is not the data the checkpoint was "
               f"trained on ({fp})")
        if not allow_different:
            raise GenerationError(msg + "; pass --allow-different-data to generate anyway")
        notes.append(msg)
    mean, std = hp.get("norm_mean"), hp.get("norm_std")
    norm = prepared.normalisation
    if mean is not None and (abs(mean - norm.mean) > 1e-9 or abs(std - norm.std) > 1e-9):
        notes.append(f"normalisation of the checkpoint ({mean:.6g}, {std:.6g}) used, not that of --data "
                     f"({norm.mean:.6g}, {norm.std:.6g})")
    return notes
