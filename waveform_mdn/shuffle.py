"""A seeded permutation of ``[0, n)`` evaluated per position, in batches: the epoch's order
without an array of the epoch (the cipher: docs/scale.md)."""

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
    """A bijection of ``[0, n)`` chosen by ``seed``: ``perm(positions)`` for a LongTensor."""

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
