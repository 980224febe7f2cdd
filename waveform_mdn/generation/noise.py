"""Per-stream random numbers for generation: stream ``k`` draws from its own generator,
seeded with its seed, in fixed blocks, so its numbers depend only on that seed and the step
index (not on the chunk size, the batch size or the other streams)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

BLOCK = 256  #: each stream's generator draws the noise of this many steps at a time


class StreamNoise:
    """The head's noise (``head.draw_noise``) for ``N`` streams, handed out step by step.

    Block ``b`` of stream ``k`` is ``head.draw_noise((BLOCK,), generator_k)``, drawn right
    after block ``b - 1``; :meth:`take` returns the next ``m`` steps of every stream,
    ``[m, N, noise_size]``, keeping what is left of the last block for the next call.
    """

    def __init__(self, head: nn.Module, seeds: Sequence[int], device: torch.device):
        self.head = head
        self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.device = device
        self.pending = torch.empty(0, len(self.generators), head.noise_size())

    def _draw_block(self) -> Tensor:
        blocks = [self.head.draw_noise((BLOCK,), g) for g in self.generators]
        return torch.stack(blocks, dim=1)  # [BLOCK, N, D]

    def take(self, m: int) -> Tensor:
        """Noise of the next ``m`` steps, ``[m, N, noise_size]`` on the device."""
        parts, have = [self.pending], len(self.pending)
        while have < m:
            parts.append(self._draw_block())
            have += BLOCK
        pool = torch.cat(parts) if len(parts) > 1 else self.pending
        out, self.pending = pool[:m], pool[m:]
        return out.to(self.device)
