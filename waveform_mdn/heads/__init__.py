"""Output heads: the distribution of the next normalised sample given the trunk's features,
one module per head, registered by name (docs/heads.md: the heads and how to add one)."""

from .base import HEADS, Head, build_head, register_head
from .gaussian import GaussianHead
from .mixture import MixtureHead
from .logistic import LogisticMixtureHead
from .mulaw import MulawSoftmaxHead

__all__ = ["HEADS", "GaussianHead", "Head", "LogisticMixtureHead", "MixtureHead", "MulawSoftmaxHead",
           "build_head", "register_head"]
