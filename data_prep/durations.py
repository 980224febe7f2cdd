"""The duration model of ``generate --text``: each phone's mean duration over the training
split of a prepared dataset.

Computed at preparation time and stored in ``meta.json`` (``phone_durations``); for data
prepared before that, generation computes it the same way from the prepared segments
(:func:`mean_phone_durations` is the one implementation). A segment is a row of
``segments.npy``, i.e. a phone after the phone set's fold, with equal neighbours joined;
phones that never occur in the training split have no entry.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def mean_phone_durations(segments: np.ndarray, sequences: Sequence[dict], phones: Sequence[str],
                         sample_rate: int) -> dict[str, float]:
    """``{phone: mean duration in seconds}`` over the segments of the training sequences.

    ``segments``: int64 ``[S, 5]`` (start, end, phone, ...); ``sequences``: the
    ``sequences.json`` records (``split``, ``seg_start``, ``seg_count``).
    """
    rows = [np.arange(s["seg_start"], s["seg_start"] + s["seg_count"]) for s in sequences if s["split"] == "train"]
    if not rows:
        return {}
    train = segments[np.concatenate(rows)]
    ids = train[:, 2].astype(np.int64)
    lengths = (train[:, 1] - train[:, 0]).astype(np.float64)
    n = len(phones)
    total = np.bincount(ids, weights=lengths, minlength=n)[:n]
    count = np.bincount(ids, minlength=n)[:n]
    return {phones[i]: float(total[i] / count[i] / sample_rate) for i in range(n) if count[i] > 0}
