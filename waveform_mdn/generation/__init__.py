"""Free-running generation: a checkpoint and a phone sequence in, audio out.

One idea per module:

* :mod:`.inputs`: phone sequences (prepared data, ``.PHN``, inline), their context per
  position, primes;
* :mod:`.network`: the predictor evaluated one step at a time (trunk weights, head copy,
  context part of the first layer);
* :mod:`.noise`: per-stream random numbers, by seed and step index;
* :mod:`.engine`: :func:`~.engine.generate`, the one step loop;
* :mod:`.batching`: sequences x streams -> batches -> de-normalised audio;
* :mod:`.checkpoint`: loading a checkpoint, checking the data against it;
* :mod:`.writers`: WAV / PNG / ``measurements.json``;
* :mod:`.cli`: ``waveform-mdn generate`` and ``waveform-mdn evaluate``.

:mod:`waveform_mdn.generate` re-exports the public names.
"""
