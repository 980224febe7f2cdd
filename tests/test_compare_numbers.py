"""compare's curves from a ``metrics.csv`` written here by hand, one row per ``log_metrics``
call as Lightning's CSVLogger writes it: steps, values, epochs, minima, non-finite values,
the float32 rounding, epochs sharing a step, and a resumed run's rows logged again."""

from __future__ import annotations

import math

import pytest

from waveform_mdn.compare import CompareError
from waveform_mdn.compare.runs import float32, read_curves


def write_csv(tmp_path, text: str):
    (tmp_path / "metrics.csv").write_text(text)
    return tmp_path / "metrics.csv"


def test_curves_from_metrics_csv(tmp_path):
    f = write_csv(tmp_path, "epoch,lr-Adam,step,train/nll,val/mse,val/nll\n"
                            "0,,9,,0.1,-0.5\n0,,9,-0.4,,\n,0.001,9,,,\n"
                            "1,,19,,0.022199999541044235,-0.7\n1,,19,-0.6,,\n"
                            "2,,29,,0.05,nan\n2,,29,-0.65,,\n")
    curves, n_epochs, columns = read_curves(f)
    assert n_epochs == 3 and columns == ["lr-Adam", "train/nll", "val/mse", "val/nll"]
    assert sorted(curves) == ["train/nll", "val/mse", "val/nll"]
    val = curves["val/nll"]
    assert val.steps == [9, 19, 29] and val.epochs == [0, 1, 2] and val.values[:2] == [-0.5, -0.7]
    assert math.isnan(val.values[2])
    summary = val.summary()
    assert (summary["min"], summary["min_epoch"], summary["min_step"]) == (-0.7, 1, 19)
    assert summary["final_epoch"] == 2 and math.isnan(summary["final"])
    assert summary["points"] == 3 and summary["nonfinite"] == 1
    assert curves["val/mse"].values == [0.1, 0.0222, 0.05]  # float32, shortest decimal
    train = curves["train/nll"]
    assert train.steps == [9, 19, 29] and train.values == [-0.4, -0.6, -0.65] and train.epochs == [0, 1, 2]


def test_each_point_has_the_epoch_of_its_row(tmp_path):
    """Validated epochs 0, 2, 3, 5, 6; epochs 2 and 3 log at the same step (epoch 3 made no
    optimiser step), and so do 5 and 6: every point is kept, with its own row's epoch."""
    rows = [(0, 9, -0.5), (2, 29, -0.6), (3, 29, -2.0), (5, 59, -0.8), (6, 59, -0.9)]
    curves, n_epochs, _ = read_curves(write_csv(tmp_path, "epoch,step,val/nll\n" + "".join(
        f"{e},{s},{v}\n" for e, s, v in rows)))
    val = curves["val/nll"]
    assert (val.epochs, val.steps, val.values) == ([0, 2, 3, 5, 6], [9, 29, 29, 59, 59], [-0.5, -0.6, -2.0, -0.8, -0.9])
    assert (val.summary()["min"], val.summary()["min_epoch"], n_epochs) == (-2.0, 3, 7)


@pytest.mark.parametrize("resume_epoch", [1, 2])
def test_a_run_resumed_from_an_earlier_checkpoint_counts_each_epoch_once(tmp_path, resume_epoch):
    """Trained to epoch 3 (3 steps per epoch), then resumed into the same file from the
    checkpoint of ``resume_epoch``: the later epochs are logged again at the same steps.
    Each epoch appears once, with the values of the resumed run."""
    first = [(e, 3 * e + 2, -0.1 * e) for e in range(4)]
    resumed = [(e, 3 * e + 2, 10.0 - 0.1 * e) for e in range(resume_epoch + 1, 5)]
    text = "epoch,step,train/nll,val/nll\n" + "".join(f"{e},{s},,{v}\n{e},{s},{v},\n" for e, s, v in first + resumed)
    curves, n_epochs, _ = read_curves(write_csv(tmp_path, text))
    for tag in ("val/nll", "train/nll"):
        assert curves[tag].epochs == [0, 1, 2, 3, 4]
        assert curves[tag].values == pytest.approx([-0.1 * e + (10.0 if e > resume_epoch else 0.0) for e in range(5)])
    assert n_epochs == 5


@pytest.mark.parametrize("text,message", [("step,val/nll\n10,-0.5\n", "no epoch column"),
                                          ("epoch,val/nll\n0,-0.5\n", "no step column"),
                                          ("epoch,step,val/nll\n0,9,-0.5\n,19,-0.7\n", "line 3")])
def test_a_file_without_lightnings_columns_is_an_error(tmp_path, text, message):
    with pytest.raises(CompareError, match=message):
        read_curves(write_csv(tmp_path, text))


@pytest.mark.parametrize("value,shortest", [(0.1, 0.1), (1 / 3, 0.33333334), (-1.2345678901, -1.2345679),
                                            (float("inf"), float("inf"))])
def test_float32_is_the_shortest_decimal_of_the_float32(value, shortest):
    assert float32(value) == shortest
