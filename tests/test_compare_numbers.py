"""compare's curves from a CSVLogger's ``metrics.csv`` written here by hand (one row per
``log_metrics`` call, as Lightning writes it): steps, values, epochs, minima, non-finite
values, the float32 rounding, and a file without a ``step`` column."""

from __future__ import annotations

import math

import pytest

from waveform_mdn.compare.scalars import INDEX_SOURCE, float32, read_scalars

TAGS = ("train/nll", "val/nll", "val/mse")


def write_csv(directory, text: str):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "metrics.csv").write_text(text)
    return directory


def test_curves_from_metrics_csv(tmp_path):
    d = write_csv(tmp_path / "run", "epoch,step,train/nll,val/mse,val/nll\n"
                                    "0,9,,0.1,-0.5\n0,9,-0.4,,\n"
                                    "1,19,,0.022199999541044235,-0.7\n1,19,-0.6,,\n"
                                    "2,29,,0.05,nan\n2,29,-0.65,,\n")
    s = read_scalars(d, TAGS)
    assert s.n_epochs == 3 and s.tags == ["epoch", "train/nll", "val/mse", "val/nll"]  # no "step" tag
    val = s.curves["val/nll"]
    assert val.steps == [9, 19, 29] and val.epochs == [0, 1, 2] and val.values[:2] == [-0.5, -0.7]
    assert math.isnan(val.values[2])
    summary = val.summary()
    assert (summary["min"], summary["min_epoch"], summary["min_step"]) == (-0.7, 1, 19)
    assert summary["final_epoch"] == 2 and math.isnan(summary["final"])
    assert summary["points"] == 3 and summary["nonfinite"] == 1 and summary["epoch_source"] == "epoch scalar"
    assert s.curves["val/mse"].values == [0.1, 0.0222, 0.05]  # float32, shortest decimal
    train = s.curves["train/nll"]
    assert train.steps == [9, 19, 29] and train.values == [-0.4, -0.6, -0.65] and train.epochs == [0, 1, 2]


def test_metrics_csv_without_steps_counts_calls(tmp_path):
    d = write_csv(tmp_path / "run", "epoch,val/nll\n0,-0.5\n1,-0.25\n2,-0.125\n")
    val = read_scalars(d, TAGS).curves["val/nll"]
    assert val.steps == [0, 1, 2] and val.values == [-0.5, -0.25, -0.125] and val.epochs == [0, 1, 2]


def test_metrics_csv_without_epochs_uses_point_indices(tmp_path):
    d = write_csv(tmp_path / "run", "step,val/nll\n10,-0.5\n20,-0.75\n")
    s = read_scalars(d, TAGS)
    val = s.curves["val/nll"]
    assert s.n_epochs is None and val.epoch_source == INDEX_SOURCE and val.epochs == [0, 1]
    assert val.steps == [10, 20] and val.summary()["min_epoch"] == 1


@pytest.mark.parametrize("value,shortest", [(0.1, 0.1), (1 / 3, 0.33333334), (-1.2345678901, -1.2345679),
                                            (float("inf"), float("inf"))])
def test_float32_is_the_shortest_decimal_of_the_float32(value, shortest):
    assert float32(value) == shortest
