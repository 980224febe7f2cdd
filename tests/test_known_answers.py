"""Known answers derived independently of the code under test.

* MCD of two spectra whose mel cepstra differ by designed amounts: the dB value from the
  formula ``10 sqrt(2) / ln 10 * sqrt(sum_d (c_d - c'_d)^2)``, a level (c0) offset ignored;
  the STFT power of a tone on a bin and the number of frames; the LSD's -80 dB floor.
* ``val/nll``, ``val/mse`` and ``val/mse_sample`` of a tiny real training run, recomputed
  from its checkpoint and the validation split with plain numpy/scipy (the mixture density,
  the Gaussian with the stored variance, the expected squared error of a draw).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import pytorch_lightning as pl
import scipy.optimize
import scipy.special
import scipy.stats
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from waveform_mdn.audio_metrics import lsd_db, mcd_db, power_spectrum
from waveform_mdn.data import PreparedDataset, phone_context
from waveform_mdn.datamodule import WaveformDataModule
from waveform_mdn.models import WaveformPredictor

SR = 16000
N_FFT = 512  #: the documented STFT size at 16 kHz (32 ms, a power of two)
N_MELS = 40  #: the documented mel bands of the MCD
MCD_CONSTANT = 10.0 * math.sqrt(2.0) / math.log(10.0)


# ------------------------------------------------------------------------------ MCD
def _mel_filterbank() -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=SR, n_fft=N_FFT, n_mels=N_MELS, fmin=0.0, fmax=SR / 2.0)


def _power_with_mel(fb: np.ndarray, mel_target: np.ndarray) -> np.ndarray:
    """A non-negative power spectrum ``p`` (STFT bins) with ``fb @ p == mel_target``."""
    p, residual = scipy.optimize.nnls(fb, mel_target, maxiter=5000)
    assert residual <= 1e-9 * np.linalg.norm(mel_target)
    return p


def _cosine(d: int) -> np.ndarray:
    """Log-amplitude pattern of cepstral coefficient ``d`` (``log|X| = c0 + 2 sum c_d cos``)."""
    k = np.arange(N_MELS)
    return 2.0 * np.cos(np.pi * d * (k + 0.5) / N_MELS)


@pytest.mark.parametrize("coefficients,level", [({1: 0.2}, 0.0), ({1: 0.2}, 3.0), ({2: 0.1, 5: -0.05}, -1.0),
                                                 ({3: 0.02, 24: 0.01}, 0.5)])
def test_mcd_of_a_designed_cepstral_difference(coefficients, level):
    """Two signals' mel log-amplitudes differ by ``level`` (c0, excluded) plus
    ``2 a_d cos(pi d (k + 1/2) / 40)``: the MCD is ``10 sqrt(2) / ln 10 * sqrt(sum a_d^2)``."""
    fb = _mel_filterbank()
    k = np.arange(N_MELS)
    log_amp_ref = -1.0 - 0.03 * k + 0.2 * np.sin(k / 3.0)  # a smooth, decaying spectral envelope
    delta = level + sum(a * _cosine(d) for d, a in coefficients.items())
    ref = _power_with_mel(fb, np.exp(2.0 * log_amp_ref))  # power = amplitude^2
    gen = _power_with_mel(fb, np.exp(2.0 * (log_amp_ref + delta)))
    frames = 7
    expect = MCD_CONSTANT * math.sqrt(sum(a * a for a in coefficients.values()))
    got = mcd_db(np.tile(gen[:, None], frames), np.tile(ref[:, None], frames), SR)
    assert got == pytest.approx(expect, rel=1e-6)


def test_mcd_is_the_mean_over_frames():
    """Frames with different cepstral differences: the MCD is the mean of their distances."""
    fb = _mel_filterbank()
    log_amp_ref = -2.0 + 0.1 * np.cos(np.arange(N_MELS) / 5.0)
    ref = _power_with_mel(fb, np.exp(2.0 * log_amp_ref))
    amounts = [0.0, 0.05, 0.3, 0.1]
    gen = np.stack([_power_with_mel(fb, np.exp(2.0 * (log_amp_ref + a * _cosine(4)))) for a in amounts], 1)
    got = mcd_db(gen, np.tile(ref[:, None], len(amounts)), SR)
    assert got == pytest.approx(MCD_CONSTANT * np.mean(amounts), rel=1e-6)


# ------------------------------------------------------------------------------ validation metrics


def _fit_tiny_run(path, head: str, tmp):
    """One short epoch of real training; returns the checkpoint's model and the datamodule."""
    pl.seed_everything(0, workers=False)
    dm = WaveformDataModule(str(path), batch_size=64, val_batch_size=4096, val_stride=3, seed=0)
    model = WaveformPredictor(**dm.data_hparams(), head=head, components=3, hidden=[16, 16])
    model.configure_optimizers = lambda: torch.optim.Adam(model.parameters(), lr=3e-3)
    ckpt = ModelCheckpoint(dirpath=str(tmp), filename="last")
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=1, limit_train_batches=15, logger=False,
                         callbacks=[ckpt], enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0)
    trainer.fit(model, datamodule=dm)
    return WaveformPredictor.load_from_checkpoint(ckpt.last_model_path or ckpt.best_model_path).eval(), dm


def _validation_examples(prepared: PreparedDataset, window: int, stride: int):
    """Every ``stride``-th example of the validation split (pad "skip": the targets of each
    sequence from ``window`` on, sequences in order), built here: windows, context, targets."""
    windows, contexts, targets = [], [], []
    for i in prepared.sequence_indices("valid"):
        x = torch.from_numpy(prepared.normalisation.normalise(prepared.sequence_wave(i))).float()
        t = torch.arange(window, len(x))
        windows.append(x.unfold(0, window, 1)[: len(t)])
        contexts.append(phone_context(torch.from_numpy(prepared.sequence_segments(i)), t, torch.zeros_like(t),
                                      "target", window))
        targets.append(x[window:])
    pick = torch.arange(0, sum(len(t) for t in targets), stride)
    ctx = {k: torch.cat([c[k] for c in contexts])[pick] for k in contexts[0]}
    return torch.cat(windows)[pick], ctx, torch.cat(targets)[pick].double().numpy()


@pytest.mark.parametrize("head", ["mixture", "gaussian"])
def test_validation_metrics_recomputed_from_the_checkpoint(prepared, head, tmp_path):
    model, dm = _fit_tiny_run(prepared.path, head, tmp_path)
    logged = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False).validate(model, datamodule=dm, verbose=False)[0]
    W = int(model.hparams.window)
    windows, ctx, y = _validation_examples(prepared, W, 3)
    assert len(y) == sum(1 for _ in range(0, len(dm.valid_dataset), 3))
    h = model.net.head
    with torch.no_grad():
        out = h.proj(model.net.features(windows, **{k: v for k, v in ctx.items() if k in model.net.phone_fields}))
    out = out.double().numpy()
    if head == "mixture":
        K = h.components
        logits, means = out[:, :K], out[:, K : 2 * K]
        scales = np.logaddexp(0.0, out[:, 2 * K :]) + float(model.hparams.min_scale)
        logw = logits - scipy.special.logsumexp(logits, axis=1, keepdims=True)
        nll = -scipy.special.logsumexp(logw + scipy.stats.norm.logpdf(y[:, None], means, scales), axis=1)
        w = np.exp(logw)
        d = means - y[:, None]
        mse = (np.sum(w * means, 1) - y) ** 2
        e2 = np.sum(w * (d**2 + scales**2), 1)  # E (draw - y)^2 and E (draw - y)^4 per example
        e4 = np.sum(w * (d**4 + 6 * d**2 * scales**2 + 3 * scales**4), 1)
    else:
        var = float(h.var)  # the training MSE stored in the checkpoint
        nll = -scipy.stats.norm.logpdf(y, out[:, 0], math.sqrt(var))
        d = out[:, 0] - y
        mse = d**2
        e2, e4 = d**2 + var, d**4 + 6 * d**2 * var + 3 * var**2
    assert logged["val/nll"] == pytest.approx(nll.mean(), rel=1e-5, abs=1e-6)
    assert logged["val/mse"] == pytest.approx(mse.mean(), rel=1e-5, abs=1e-7)
    sampling_error = math.sqrt(np.sum(e4 - e2**2)) / len(y)
    assert abs(logged["val/mse_sample"] - e2.mean()) < 4.5 * sampling_error
    assert logged["val/mse_sample"] > mse.mean()  # a draw is further off than the mean


def test_power_spectrum_frames_and_a_tone_on_a_bin():
    """Centred frames every 10 ms (``1 + n // 160`` of them at 16 kHz), Hann window of 512:
    a unit cosine exactly on bin 32 has power ``(sum(hann) / 2)^2 = 128^2`` there."""
    n = 16000 // 4 + 37
    x = np.cos(2 * np.pi * 32 * np.arange(n) / N_FFT)
    p = power_spectrum(x, SR)
    assert p.shape == (N_FFT // 2 + 1, 1 + n // 160)
    middle = p[:, p.shape[1] // 2]
    assert middle[32] == pytest.approx(128.0**2, rel=1e-6)
    assert middle[40:].max() < 1e-12 * middle[32]


@pytest.mark.parametrize("ref_db,expect_db", [(-79.0, 10.0), (-85.0, 11.0)])
def test_lsd_floor_is_80_db_below_the_reference_peak(ref_db, expect_db):
    """One bin of 257 differs: the generated one at -69 dB, the reference one at ``ref_db``
    (relative to the reference's peak), floored at -80 dB: LSD = |difference| / sqrt(257)."""
    ref = np.ones((N_FFT // 2 + 1, 3))
    gen = ref.copy()
    ref[5], gen[5] = 10.0 ** (ref_db / 10), 10.0 ** (-69.0 / 10)
    assert lsd_db(gen, ref) == pytest.approx(expect_db / math.sqrt(N_FFT // 2 + 1), rel=1e-9)


def test_lsd_is_the_mean_over_frames_of_each_frames_rms():
    """Frame 0 differs by 10 dB in one bin of 257, frame 1 not at all: the LSD is
    ``(10 / sqrt(257) + 0) / 2``, not the RMS over all bins of both frames."""
    ref = np.ones((N_FFT // 2 + 1, 2))
    gen = ref.copy()
    gen[7, 0] = 10.0
    assert lsd_db(gen, ref) == pytest.approx(10.0 / math.sqrt(N_FFT // 2 + 1) / 2, rel=1e-9)
