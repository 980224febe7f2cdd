"""The training run's audio and figures in TensorBoard (``docs/training.md``)."""

from __future__ import annotations

import numpy as np
import torch
from pytorch_lightning import Callback, LightningModule, Trainer
from pytorch_lightning.utilities import rank_zero_only, rank_zero_warn

from .contract import JUDGE_TAGS
from .data import NextSampleDataset
from .figures import waveform_figure

ZOOM_MS = 30.0


class PredictionAudioLogger(Callback):
    """The clips and figures of ``docs/training.md`` (``audio.*``), logged after the module's
    epoch end so the MLP's noise is this validation's MSE; ``every_n_epochs`` 0 disables it.
    With ``judges``, the epoch's mean judges' scores (a score no clip got is not logged)."""

    def __init__(self, every_n_epochs: int = 10, sequence: str | None = None, seconds: float = 1.0,
                 offset_seconds: float = 0.0, figure: bool = True, seed: int = 0, free_running: bool = True,
                 judges: bool = True):
        super().__init__()
        self.every_n_epochs, self.sequence, self.seed = int(every_n_epochs), sequence, int(seed)
        self.seconds, self.offset_seconds = float(seconds), float(offset_seconds)
        self.figure, self.free_running, self.judges = bool(figure), bool(free_running), bool(judges)
        self._target_logged, self._scores = False, []

    @rank_zero_only
    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.every_n_epochs <= 0 or trainer.sanity_checking or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        from pytorch_lightning.loggers import TensorBoardLogger

        writer = next((lg.experiment for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
        dm = getattr(trainer, "datamodule", None)
        if writer is None or dm is None or getattr(dm, "valid_dataset", None) is None:
            return
        try:
            self.log_clip(writer, dm, pl_module, trainer.global_step)
        except Exception as e:  # a figure must never kill a training run
            rank_zero_warn(f"PredictionAudioLogger: could not log the clip: {e!r}")

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """The judges' means over this epoch's clips, logged as the module logs its metrics."""
        scores, self._scores = self._scores, []
        for tag in JUDGE_TAGS:
            values = [v for s in scores if (v := s[tag.removeprefix("audio/")]) is not None]
            if values:
                pl_module.log(tag, float(np.mean(values)), rank_zero_only=True)

    def _sequence(self, dm) -> int:
        valid = dm.valid_dataset
        return valid.seq_indices[0] if self.sequence is None else valid.prepared.find(self.sequence)

    @torch.inference_mode()
    def predict_clip(self, dm, pl_module: LightningModule) -> dict[str, np.ndarray]:
        """Teacher-forced mean and draw of the clip (``Predictor.params`` on the true windows),
        de-normalised."""
        valid = dm.valid_dataset
        ds = NextSampleDataset(valid.prepared, split=None, window=valid.window, pad=valid.pad, context=valid.context,
                               sequences=[self._sequence(dm)], in_memory=False)
        sr = ds.prepared.sample_rate
        start = min(int(self.offset_seconds * sr), max(len(ds) - 1, 0))
        idx = torch.arange(start, min(start + max(int(self.seconds * sr), 1), len(ds)))
        net, gen = pl_module.net, torch.Generator(device=pl_module.device).manual_seed(self.seed)
        parts: dict[str, list] = {"target": [], "mean": [], "sample": []}
        for chunk in idx.split(8192):
            batch = {k: v.to(pl_module.device) for k, v in ds.get_batch(chunk).items()}
            params = net.params(batch)
            for key, x in (("target", batch["target"]), ("mean", net.head.mean_from_params(params)),
                           ("sample", net.head.sample_from_params(params, generator=gen))):
                parts[key].append(x.float().cpu())
        norm = net.head.norm  # the model's own normalisation
        out = {k: np.clip(norm.denormalise(torch.cat(v).numpy()), -1.0, 1.0).astype(np.float32)
               for k, v in parts.items()}
        return {**out, "sample_rate": sr}

    def log_clip(self, writer, dm, pl_module: LightningModule, step: int) -> None:
        """Logs the teacher-forced clips, then the free-running one."""
        clip = self.predict_clip(dm, pl_module)
        sr = clip["sample_rate"]
        if not self._target_logged:
            writer.add_audio("audio/target", torch.from_numpy(clip["target"])[None], step, sample_rate=sr)
            self._target_logged = True
        for key in ("mean", "sample"):
            writer.add_audio(f"audio/teacher_forced_{key}", torch.from_numpy(clip[key])[None], step, sample_rate=sr)
        if self.figure:
            signals = [("target", clip["target"]), ("teacher-forced mean", clip["mean"]),
                       ("teacher-forced draw", clip["sample"])]
            writer.add_figure("figures/teacher_forced", waveform_figure(signals, sr, "teacher-forced prediction",
                                                                        zoom_ms=ZOOM_MS), step, close=True)
        if self.free_running:
            self.log_free_running(writer, dm, pl_module, step)

    def log_free_running(self, writer, dm, pl_module: LightningModule, step: int) -> None:
        """The clip generated by the engine, primed with its first real window; with ``judges``,
        its judges' scores against its phones are kept for the epoch's means."""
        from .generation.batching import generate_for_sequence
        from .generation.settings import GenerationSettings

        prepared, seq = dm.valid_dataset.prepared, self._sequence(dm)
        clip = generate_for_sequence(pl_module, prepared, seq,
                                     GenerationSettings(prime="real", seconds=self.seconds, seed=self.seed))
        audio = clip.audio
        sr = prepared.sample_rate
        writer.add_audio("audio/free_running", torch.from_numpy(audio)[None], step, sample_rate=sr)
        if self.figure:
            signals = [("natural", prepared.sequence_wave(seq)[: len(audio)]), ("free-running", audio)]
            writer.add_figure("figures/free_running", waveform_figure(signals, sr, "free-running generation",
                                                                      zoom_ms=ZOOM_MS), step, close=True)
        if self.judges:
            from .audio_metrics.judges import judge

            phones = [p["phone"] for p in clip.sequence.intended_phones(prepared.phones)]
            self._scores.append(judge(audio, sr, phones, "the free-running clip"))
