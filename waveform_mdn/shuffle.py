"""A seeded random permutation of ``[0, n)`` evaluated index by index, in batches.

Shuffling an epoch with ``torch.randperm(n)`` holds ``n`` int64 indices and takes time
proportional to ``n`` before the first batch (278 M examples: 2.2 GB and 26 s).
:class:`FeistelPermutation` instead computes the shuffled value of any position on demand:
``perm(positions)`` for a ``LongTensor`` of positions, with a few vectorised int64
operations per position, no state beyond six round keys, and the same result on every
process and machine.

The cipher (the tests re-implement it from this description, one integer at a time):

* ``bits = max(bit_length(n - 1), 2)``; a value ``x < 2**bits`` is split into a left part
  of ``bits // 2`` bits (the high ones) and a right part of the remaining low bits.
* Each of the six rounds maps ``(L, R)`` to ``(R, L ^ (F(R, key) & mask(bits of L)))``: the
  parts swap, and with them their widths (an unbalanced Feistel network, a bijection of
  ``[0, 2**bits)`` whatever the round function). At the end ``x = (L << width of R) | R``.
* ``F(r, key)``: ``h = (r ^ key) mod 2**32``; twice ``h = (h * 0x45d9f3b) mod 2**32;
  h ^= h >> 16`` (a 32-bit integer hash with full avalanche; every product stays below
  2**59, so int64 never overflows).
* Round keys: six integers in ``[0, 2**32)`` from ``torch.randint`` with a
  ``torch.Generator`` seeded with ``seed``.
* Cycle walking: a result ``>= n`` is encrypted again until it falls in ``[0, n)``. Since
  ``2**bits < 2n``, this takes fewer than two encryptions per position on average, and the
  result is a bijection of ``[0, n)``.
"""

from __future__ import annotations

import torch

ROUNDS = 6
MULTIPLIER = 0x45D9F3B
MASK32 = (1 << 32) - 1
MAX_N = 1 << 62  # halves of at most 31 bits: every intermediate fits in int64


def _round_function(r: torch.Tensor, key: int) -> torch.Tensor:
    h = (r ^ key).bitwise_and_(MASK32).mul_(MULTIPLIER).bitwise_and_(MASK32)
    h ^= h >> 16
    h.mul_(MULTIPLIER).bitwise_and_(MASK32)
    return h.bitwise_xor_(h >> 16)


class FeistelPermutation:
    """A bijection of ``[0, n)`` chosen by ``seed`` (see the module docstring)."""

    def __init__(self, n: int, seed: int):
        n = int(n)
        if not 1 <= n <= MAX_N:
            raise ValueError(f"a permutation needs 1 <= n <= 2**62, not {n}")
        self.n = n
        self.bits = max((n - 1).bit_length(), 2)
        generator = torch.Generator().manual_seed(int(seed))
        self.keys = torch.randint(0, 1 << 32, (ROUNDS,), generator=generator, dtype=torch.int64).tolist()

    def _encrypt(self, x: torch.Tensor) -> torch.Tensor:
        """One pass of the Feistel network over ``[0, 2**bits)``."""
        left_bits = self.bits // 2
        right_bits = self.bits - left_bits
        left, right = x >> right_bits, x & ((1 << right_bits) - 1)
        for key in self.keys:
            left, right = right, _round_function(right, key).bitwise_and_((1 << left_bits) - 1).bitwise_xor_(left)
            left_bits, right_bits = right_bits, left_bits
        return (left << right_bits) | right

    def __call__(self, positions: torch.Tensor) -> torch.Tensor:
        """The permuted values of ``positions`` (int64, each in ``[0, n)``)."""
        positions = torch.as_tensor(positions, dtype=torch.int64)
        if len(positions) and (int(positions.min()) < 0 or int(positions.max()) >= self.n):
            raise IndexError(f"permutation position out of range [0, {self.n})")
        x = self._encrypt(positions)
        todo = torch.nonzero(x >= self.n).flatten()
        while len(todo):  # cycle walking
            y = self._encrypt(x[todo])
            x[todo] = y
            todo = todo[y >= self.n]
        return x
