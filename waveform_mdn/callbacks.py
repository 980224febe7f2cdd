"""Callbacks for training runs.

:class:`PredictionAudioLogger` (rank zero only) logs, every ``every_n_epochs`` epochs, a
short clip of one validation sequence to TensorBoard:

* audio ``audio/target`` (once), ``audio/teacher_forced_mean`` and
  ``audio/teacher_forced_sample``: at every sample the model sees the *true* previous
  ``window`` samples and its phone context (teacher forcing) and predicts the next one,
  either the mean of its predictive distribution or one value drawn from it;
* a figure ``figures/teacher_forced``: the waveforms (whole clip and a 30 ms zoom) and the
  spectrograms of the target and of the drawn prediction.

* audio ``audio/free_running`` and figure ``figures/free_running`` (with ``free_running``,
  default on): the model fed with its own output, sample by sample, from the start of the
  sequence (primed with its first real window), through
  :func:`waveform_mdn.generate.generate_for_sequence`: what the model sounds like when it
  has to stand on its own.

Audio is written denormalised with the model's ``norm_mean``/``norm_std`` (the
:class:`~data_prep.audio_io.Normalisation` generation uses), clipped to [-1, 1]; the
figures are :func:`waveform_mdn.figures.waveform_figure`.

The clip is logged in ``on_validation_end``, after the module's ``on_validation_epoch_end``
has recorded this validation's MSE (the MLP's free-running noise is the validation MSE).
"""

from __future__ import annotations

import numpy as np
import torch
from pytorch_lightning import Callback, LightningModule, Trainer
from pytorch_lightning.utilities import rank_zero_only, rank_zero_warn

from data_prep.audio_io import Normalisation
from .data import NextSampleDataset
from .figures import waveform_figure

ZOOM_MS = 30.0


class PredictionAudioLogger(Callback):
    """Log a teacher-forced prediction of a validation clip (audio + figure) to TensorBoard."""

    def __init__(
        self,
        every_n_epochs: int = 10,
        sequence: str | None = None,
        seconds: float = 1.0,
        offset_seconds: float = 0.0,
        figure: bool = True,
        seed: int = 0,
        free_running: bool = True,
    ):
        """
        Args:
            every_n_epochs: log after every n-th validation epoch (0 disables the callback).
            sequence: id (or utterance id) of the validation sequence (null: the first one).
            seconds: length of the clip.
            offset_seconds: where the clip starts inside the sequence's examples.
            figure: also log the waveform/spectrogram figure.
            seed: seed of the draws of the sampled clip.
            free_running: also generate the clip free-running (the model's own output fed back).
        """
        super().__init__()
        self.every_n_epochs = int(every_n_epochs)
        self.sequence = sequence
        self.seconds = float(seconds)
        self.offset_seconds = float(offset_seconds)
        self.figure = bool(figure)
        self.seed = int(seed)
        self.free_running = bool(free_running)
        self._target_logged = False

    def _tensorboard(self, trainer: Trainer):
        from pytorch_lightning.loggers import TensorBoardLogger

        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                return logger.experiment
        return None

    @rank_zero_only
    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.every_n_epochs <= 0 or trainer.sanity_checking:
            return
        if (trainer.current_epoch + 1) % self.every_n_epochs != 0:
            return
        writer = self._tensorboard(trainer)
        dm = getattr(trainer, "datamodule", None)
        if writer is None or dm is None or getattr(dm, "valid_dataset", None) is None:
            return
        try:
            self.log_clip(writer, dm, pl_module, trainer.global_step)
        except Exception as e:  # a figure must never kill a training run
            rank_zero_warn(f"PredictionAudioLogger: could not log the clip: {e!r}")

    def _clip_dataset(self, dm) -> NextSampleDataset:
        valid = dm.valid_dataset
        prepared = valid.prepared
        seq = valid.seq_indices[0] if self.sequence is None else prepared.find(self.sequence)
        return NextSampleDataset(prepared, split=None, window=valid.window, pad=valid.pad, context=valid.context,
                                 sequences=[seq], in_memory=False)

    @torch.inference_mode()
    def predict_clip(self, dm, pl_module: LightningModule) -> dict[str, np.ndarray]:
        """Teacher-forced prediction of the clip; returns denormalised float arrays."""
        ds = self._clip_dataset(dm)
        sr = ds.prepared.sample_rate
        start = min(int(self.offset_seconds * sr), max(len(ds) - 1, 0))
        stop = min(start + max(int(self.seconds * sr), 1), len(ds))
        idx = torch.arange(start, stop)
        net = pl_module.net
        gen = torch.Generator(device=pl_module.device)
        gen.manual_seed(self.seed)
        means, samples, targets = [], [], []
        for chunk in idx.split(8192):
            batch = {k: v.to(pl_module.device) for k, v in ds.get_batch(chunk).items()}
            params = net.params(batch)
            means.append(net.head.mean_from_params(params).float().cpu())
            samples.append(net.head.sample_from_params(params, generator=gen).float().cpu())
            targets.append(batch["target"].float().cpu())
        norm = model_normalisation(pl_module)

        def audio(parts):
            return np.clip(norm.denormalise(torch.cat(parts).numpy()), -1.0, 1.0).astype(np.float32)

        return {"target": audio(targets), "mean": audio(means), "sample": audio(samples), "sample_rate": sr}

    def log_clip(self, writer, dm, pl_module: LightningModule, step: int) -> None:
        clip = self.predict_clip(dm, pl_module)
        sr = clip["sample_rate"]
        if not self._target_logged:
            writer.add_audio("audio/target", torch.from_numpy(clip["target"])[None], step, sample_rate=sr)
            self._target_logged = True
        writer.add_audio("audio/teacher_forced_mean", torch.from_numpy(clip["mean"])[None], step, sample_rate=sr)
        writer.add_audio("audio/teacher_forced_sample", torch.from_numpy(clip["sample"])[None], step,
                         sample_rate=sr)
        if self.figure:
            signals = [("target", clip["target"]), ("teacher-forced mean", clip["mean"]),
                       ("teacher-forced draw", clip["sample"])]
            fig = waveform_figure(signals, sr, "teacher-forced prediction", zoom_ms=ZOOM_MS)
            writer.add_figure("figures/teacher_forced", fig, step, close=True)
        if self.free_running:
            self.log_free_running(writer, dm, pl_module, step)

    def log_free_running(self, writer, dm, pl_module: LightningModule, step: int) -> None:
        from .generate import generate_for_sequence

        valid = dm.valid_dataset
        prepared = valid.prepared
        seq = valid.seq_indices[0] if self.sequence is None else prepared.find(self.sequence)
        audio = generate_for_sequence(pl_module, prepared, seq, seconds=self.seconds, mode="sample",
                                      seed=self.seed, prime="real")
        sr = prepared.sample_rate
        writer.add_audio("audio/free_running", torch.from_numpy(audio)[None], step, sample_rate=sr)
        if self.figure:
            signals = [("natural", prepared.sequence_wave(seq)[: len(audio)]), ("free-running", audio)]
            fig = waveform_figure(signals, sr, "free-running generation", zoom_ms=ZOOM_MS)
            writer.add_figure("figures/free_running", fig, step, close=True)


def model_normalisation(pl_module: LightningModule) -> Normalisation:
    """The normalisation the model was trained with (its ``norm_mean``/``norm_std``)."""
    hp = pl_module.hparams
    return Normalisation(float(hp.norm_mean), float(hp.norm_std))
