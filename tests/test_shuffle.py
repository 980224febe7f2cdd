"""The training order: :class:`waveform_mdn.shuffle.FeistelPermutation` and the sampler's use of it.

* The cipher against a one-integer-at-a-time re-implementation of its documented definition;
  a bijection of ``[0, n)`` for awkward ``n``.
* The sampler: disjoint rank shares of equal length that together are the permutation's
  first ``per_rank x world`` positions; the same batches whatever the chunk size; any
  batch onwards (resume) equals the tail of the whole epoch.
* Mixing: over a whole epoch of a small corpus of utterances and speakers, the batches
  have the distinct utterances and speakers per batch that a uniform shuffle has (the
  exact expectation, by counting), and the order has no correlation between epoch
  position and storage position or between neighbours. ``torch.randperm`` passes the same
  checks; planted bad orders (identity, an affine stride, block shuffles) fail them.
"""

from __future__ import annotations

import math

import pytest
import torch

from waveform_mdn import batches as batches_module
from waveform_mdn.batches import IndexBatchSampler
from waveform_mdn.shuffle import MULTIPLIER, ROUNDS, FeistelPermutation


# -- the cipher, one integer at a time ------------------------------------------------------
def reference_permutation(n: int, seed: int, x: int) -> int:
    """The definition in docs/scale.md, in plain Python integers."""
    g = torch.Generator().manual_seed(seed)
    keys = [int(k) for k in torch.randint(0, 2**32, (ROUNDS,), generator=g, dtype=torch.int64)]
    bits = max((n - 1).bit_length(), 2)

    def f(r: int, key: int) -> int:
        h = (r ^ key) % 2**32
        for _ in range(2):
            h = (h * MULTIPLIER) % 2**32
            h ^= h >> 16
        return h

    def encrypt(v: int) -> int:
        lw, rw = bits // 2, bits - bits // 2
        left, right = v >> rw, v % 2**rw
        for key in keys:
            left, right = right, left ^ (f(right, key) % 2**lw)
            lw, rw = rw, lw
        return left * 2**rw + right

    v = encrypt(x)
    while v >= n:
        v = encrypt(v)
    return v


@pytest.mark.parametrize("n,seed", [(1, 0), (2, 5), (3, 1), (1000, 7), (4099, 123), (2**33 + 17, 2), (2**62, 9)])
def test_permutation_matches_the_definition(n, seed):
    g = torch.Generator().manual_seed(n % 1000 + seed)
    positions = torch.cat([torch.arange(min(n, 50)), torch.randint(0, n, (200,), generator=g, dtype=torch.int64)])
    got = FeistelPermutation(n, seed)(positions).tolist()
    assert got == [reference_permutation(n, seed, int(p)) for p in positions]


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 127, 128, 129, 1000, 65537])
def test_permutation_is_a_bijection(n):
    values = FeistelPermutation(n, seed=n)(torch.arange(n))
    assert torch.equal(values.sort().values, torch.arange(n))
    assert n < 5 or not torch.equal(values, torch.arange(n))


def test_permutation_refuses_positions_outside_its_range():
    with pytest.raises(IndexError, match=r"out of range \[0, 10\)"):
        FeistelPermutation(10, 0)(torch.tensor([3, 10]))
    with pytest.raises(ValueError, match="1 <= n"):
        FeistelPermutation(0, 0)


# -- the sampler --------------------------------------------------------------------------
def _epoch(n, bs, epoch, rank=0, world=1, drop_last=False, start=0) -> list[torch.Tensor]:
    s = IndexBatchSampler(n, bs, shuffle=True, seed=11, drop_last=drop_last, rank=rank, world_size=world)
    s.set_epoch(epoch)
    out = list(s.batches(start))
    assert start > 0 or len(out) == len(s)
    return out


@pytest.mark.parametrize("n,bs,world,drop_last", [(10_007, 64, 3, False), (10_007, 64, 3, True), (5, 2, 2, False),
                                                  (200_003, 1024, 2, False)])
def test_rank_shares_are_the_strided_permutation(n, bs, world, drop_last):
    perm = FeistelPermutation(n, 11 + 4)  # seed + epoch
    per_rank = n // world
    stop = per_rank - per_rank % bs if drop_last else per_rank
    shares = [torch.cat(_epoch(n, bs, 4, r, world, drop_last)) for r in range(world)]
    for r, share in enumerate(shares):
        assert torch.equal(share, perm(r + world * torch.arange(stop)))
    together = torch.cat(shares)
    assert len(together) == world * stop == len(set(together.tolist()))


def test_batches_do_not_depend_on_the_chunk_size_and_resume_anywhere(monkeypatch):
    whole = _epoch(3001, 30, 2, rank=1, world=2)
    monkeypatch.setattr(batches_module, "SHUFFLE_CHUNK", 100)  # 90 positions per chunk: 3 batches
    small = _epoch(3001, 30, 2, rank=1, world=2)
    assert all(torch.equal(a, b) for a, b in zip(whole, small, strict=True))
    for start in (1, 3, 4, 49):
        tail = _epoch(3001, 30, 2, rank=1, world=2, start=start)
        assert all(torch.equal(a, b) for a, b in zip(whole[start:], tail, strict=True))
    assert not torch.equal(torch.cat(whole), torch.cat(_epoch(3001, 30, 3, rank=1, world=2)))  # next epoch


def test_an_epoch_of_a_trillion_examples_starts_at_once_anywhere():
    # nothing of the epoch's size is made: a whole-epoch randperm would need 8 TB here
    n, bs, world = 2**40 + 8 * 77 + 3, 1024, 8  # 2**37 + 77 examples per rank
    s = IndexBatchSampler(n, bs, shuffle=True, seed=0, rank=5, world_size=world)
    assert len(s) == math.ceil((n // world) / bs)
    start = len(s) - 2  # resume near the end of the epoch
    first, last = list(s.batches(start))
    perm = FeistelPermutation(n, 0)
    i = torch.arange(start * bs, n // world)
    assert torch.equal(torch.cat([first, last]), perm(5 + world * i)) and len(first) == bs and len(last) == 77


# -- mixing: a whole epoch against a uniform shuffle ------------------------------------------
BATCH = 128
UTTERANCES, PER_SPEAKER = 400, 10


@pytest.fixture(scope="module")
def corpus() -> dict:
    """Examples of 400 utterances (100 to 900 examples each) of 40 speakers, in storage order."""
    g = torch.Generator().manual_seed(3)
    lengths = torch.randint(100, 901, (UTTERANCES,), generator=g)
    n = int(lengths.sum())
    utt = torch.repeat_interleave(torch.arange(UTTERANCES), lengths)
    return {"n": n, "lengths": lengths, "utterance": utt, "speaker": utt // PER_SPEAKER}


def expected_distinct(group_sizes: torch.Tensor, n: int, b: int) -> float:
    """Expected number of groups met by b examples drawn without replacement from n:
    sum over groups of 1 - C(n - size, b) / C(n, b)."""
    def log_choose(a, k):
        return math.lgamma(a + 1) - math.lgamma(k + 1) - math.lgamma(a - k + 1)

    return sum(1 - math.exp(log_choose(n - s, b) - log_choose(n, b)) if n - s >= b else 1.0
               for s in group_sizes.tolist())


def _distinct_per_batch(labels: torch.Tensor) -> float:
    rows = labels[: len(labels) // BATCH * BATCH].view(-1, BATCH).sort(dim=1).values
    return float((rows.diff(dim=1) != 0).sum(dim=1).add(1).double().mean())


def _correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.double(), b.double()]))[0, 1])


def mixing_failures(order: torch.Tensor, corpus: dict) -> list[str]:
    """What tells ``order`` (storage positions in training order) from a uniform shuffle."""
    failures = []
    n = len(order)
    speaker_sizes = torch.bincount(corpus["speaker"])
    for name, labels, sizes in (("utterances", corpus["utterance"], corpus["lengths"]),
                                ("speakers", corpus["speaker"], speaker_sizes)):
        got = _distinct_per_batch(labels[order])
        want = expected_distinct(sizes, corpus["n"], BATCH)
        if abs(got - want) > 0.005 * BATCH:  # the mean over ~1,900 batches: a few 0.001 x BATCH
            failures.append(f"distinct {name} per batch {got:.2f}, a uniform shuffle {want:.2f}")
    limit = 5 / math.sqrt(n)  # sample correlations of independent positions: about N(0, 1/n)
    pairs = {"epoch position": (torch.arange(n), order)}
    for lag in (*range(1, 9), BATCH):
        pairs[f"lag {lag}"] = (order[:-lag], order[lag:])
    for name, (a, b) in pairs.items():
        r = _correlation(a, b)
        if abs(r) > limit:
            failures.append(f"correlation of storage positions, {name}: {r:.4f}")
    return failures


def _block_shuffle(n: int, block: int, buffer_blocks: int, seed: int) -> torch.Tensor:
    """Blocks of consecutive examples in random order, then shuffled within a buffer."""
    g = torch.Generator().manual_seed(seed)
    blocks = torch.arange(n).split(block)
    order = torch.cat([blocks[i] for i in torch.randperm(len(blocks), generator=g).tolist()])
    span = block * buffer_blocks
    return torch.cat([part[torch.randperm(len(part), generator=g)] for part in order.split(span)])


def test_the_sampler_mixes_like_a_uniform_shuffle(corpus):
    n = corpus["n"]
    randperm = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    assert mixing_failures(randperm, corpus) == []  # the checks pass a true uniform shuffle
    for epoch in (0, 1):
        assert mixing_failures(torch.cat(_epoch(n, BATCH, epoch)), corpus) == [], epoch
    share = torch.cat(_epoch(n, BATCH, 0, rank=1, world=3))  # one rank's share of the epoch
    assert mixing_failures(share, corpus) == []


@pytest.mark.parametrize("bad", ["identity", "affine stride", "small blocks", "blocks too big for the buffer"])
def test_planted_bad_orders_fail_the_mixing_checks(corpus, bad):
    n = corpus["n"]
    a = round(n * 0.211)  # a stride whose lag-1 correlation is about 0: later lags are not
    while math.gcd(a, n) != 1:
        a += 1
    order = {
        "identity": lambda: torch.arange(n),
        "affine stride": lambda: (torch.arange(n) * a + 12345) % n,
        "small blocks": lambda: _block_shuffle(n, block=4, buffer_blocks=1, seed=1),
        "blocks too big for the buffer": lambda: _block_shuffle(n, block=2048, buffer_blocks=8, seed=1),
    }[bad]()
    assert torch.equal(order.sort().values, torch.arange(n))  # each one is a permutation
    assert mixing_failures(order, corpus) != []
