"""A run's hyperparameters as compare reads them from ``hparams.yaml``, and the check that
the compared runs share their data and normalisation (waveform_mdn/compare/runs.py)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from waveform_mdn.compare import CompareError, DataMismatchError
from waveform_mdn.compare.runs import check_same_data, read_hparams

NEEDED = {"head": "mixture", "data_fingerprint": "fp1", "norm_mean": 0.0, "norm_std": 0.1}


def _hparams_file(tmp_path: Path, text: str) -> Path:
    (tmp_path / "hparams.yaml").write_text(text)
    return tmp_path / "hparams.yaml"


def test_values_are_kept_and_mappings_nones_and_private_keys_dropped(tmp_path):
    _hparams_file(tmp_path, yaml.safe_dump({**NEEDED, "data_fingerprint": 12345, "norm_mean": [0, 1],
                                            "hidden": [300, 300], "optimizer": {"lr": 0.01}, "seed": None,
                                            "_instantiator": "x", "_class_path": "y", "lr_": 3}))
    hp = read_hparams(tmp_path)
    assert hp == {"head": "mixture", "data_fingerprint": "12345", "norm_mean": [0.0, 1.0], "norm_std": 0.1,
                  "hidden": [300, 300], "lr_": 3}
    assert all(type(v) is float for v in hp["norm_mean"])


def test_a_file_that_is_no_mapping_lacks_every_needed_key(tmp_path):
    f = _hparams_file(tmp_path, "- just\n- a list\n")
    with pytest.raises(CompareError) as e:
        read_hparams(tmp_path)
    assert str(e.value) == f"{f}: missing hyperparameter(s) head, data_fingerprint, norm_mean, norm_std"


def test_missing_keys_and_bad_norms_are_named(tmp_path):
    f = _hparams_file(tmp_path, yaml.safe_dump({"head": "mixture", "norm_mean": 0.0}))
    with pytest.raises(CompareError) as e:
        read_hparams(tmp_path)
    assert str(e.value) == f"{f}: missing hyperparameter(s) data_fingerprint, norm_std"
    _hparams_file(tmp_path, yaml.safe_dump({**NEEDED, "norm_std": "wide"}))
    with pytest.raises(CompareError) as e:
        read_hparams(tmp_path)
    assert str(e.value) == f"{f}: bad norm_mean / norm_std: could not convert string to float: 'wide'"


def test_unparsable_yaml_gives_the_first_line_of_the_parsers_message(tmp_path):
    f = _hparams_file(tmp_path, "head: mixture\nnorm_std: [0.1\n")
    with pytest.raises(yaml.YAMLError) as parsed:
        yaml.safe_load(f.read_text())
    with pytest.raises(CompareError) as e:
        read_hparams(tmp_path)
    assert str(e.value) == f"cannot read {f}: {str(parsed.value).splitlines()[0]}"


def _run(name: str, fingerprint: str = "fp1", mean=0.0, std=0.1) -> SimpleNamespace:
    hp = {"data_fingerprint": fingerprint, "norm_mean": mean, "norm_std": std}
    return SimpleNamespace(name=name, hparams=hp, version_dir=Path("runs") / name)


@pytest.mark.parametrize("other", [_run("b", std=0.1 * (1 + 5e-7)), _run("b", mean=5e-13), _run("b")])
def test_runs_within_the_tolerances_share_their_data(other):
    assert check_same_data([_run("a"), other], allow=False) == []


@pytest.mark.parametrize("other", [
    _run("b", fingerprint="fp2"), _run("b", std=0.1 * (1 + 5e-6)), _run("b", mean=2e-12),
    _run("b", mean=[0.0]),  # one value per channel against one value
])
def test_runs_that_differ_are_refused_or_reported(other):
    a = _run("a")
    lines = [f"{r.name}: data_fingerprint={r.hparams['data_fingerprint']} norm_mean={r.hparams['norm_mean']} "
             f"norm_std={r.hparams['norm_std']} ({r.version_dir / 'hparams.yaml'})" for r in (a, other)]
    with pytest.raises(DataMismatchError) as e:
        check_same_data([a, other], allow=False)
    assert str(e.value) == ("refusing to compare runs trained on different data or normalisation (their NLL/MSE "
                            f"are not on the same scale): {lines[0]}; {lines[1]}; "
                            "pass --allow-different-data to compare them anyway")
    assert check_same_data([a, other], allow=True) == [
        "The runs were trained on **different data or normalisation** (`--allow-different-data`); their "
        "numbers are not directly comparable:", f"- {lines[0]}", f"- {lines[1]}"]
