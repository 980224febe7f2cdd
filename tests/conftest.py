"""Shared fixtures: the shipped demo corpus, prepared small subsets of it, the shared
NLTK TIMIT sample (skipped cleanly when ../shared is absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from data_prep import DEMO_CORPUS
from data_prep.prepare import Selection, SplitRule, prepare

REPO = Path(__file__).resolve().parent.parent
SHARED_TIMIT = Path(os.environ.get("WAVEFORM_MDN_SHARED", REPO.parent / "shared")) / "corpora" / "timit_nltk_sample"


@pytest.fixture(scope="session")
def demo_corpus() -> Path:
    return DEMO_CORPUS


@pytest.fixture(scope="session")
def demo_prepared(tmp_path_factory) -> Path:
    """One speaker (MKAL0) of the demo corpus: 10 train and 2 valid utterances, ~35 s."""
    out = tmp_path_factory.mktemp("prepared") / "demo_mkal0"
    prepare(DEMO_CORPUS, out, selection=Selection(speakers=["MKAL0"]),
            split=SplitRule(mode="per_speaker", valid=2, seed=0), progress=False)
    return out


@pytest.fixture(scope="session")
def demo_prepared_all(tmp_path_factory) -> Path:
    """All three demo speakers, official split (TEST speaker MKED0 is validation)."""
    out = tmp_path_factory.mktemp("prepared") / "demo_all"
    prepare(DEMO_CORPUS, out, split=SplitRule(mode="official"), progress=False)
    return out


@pytest.fixture(scope="session")
def timit_sample() -> Path:
    if not SHARED_TIMIT.is_dir():
        pytest.skip(f"shared TIMIT sample not present at {SHARED_TIMIT}")
    return SHARED_TIMIT


@pytest.fixture(scope="module")
def prepared(demo_prepared):
    """The prepared demo corpus, opened (a :class:`~waveform_mdn.data.PreparedDataset`)."""
    from waveform_mdn.data import PreparedDataset

    return PreparedDataset(demo_prepared)


@pytest.fixture
def one_thread():
    """One OpenMP thread for the test (small batches on a shared 2-core machine: more threads
    only add contention); files opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
