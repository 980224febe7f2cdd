"""Output heads: the distribution of the next (normalised) sample given trunk features.

A head turns the trunk's features ``[B, H]`` into the parameters of a distribution over
the normalised next sample. Heads are registered by name; the model builds one with
:func:`build_head`. Adding an output distribution means writing one new subclass of
:class:`Head` decorated with ``@register_head("name")``; nothing else changes:

>>> @register_head("laplace")                                    # doctest: +SKIP
... class LaplaceHead(Head):
...     n_outputs = 2
...     def params(self, features):
...         loc, raw = self.project(features).unbind(-1)
...         return loc, F.softplus(raw) + self.min_scale
...     def distribution_from_params(self, params):
...         return torch.distributions.Laplace(*params, validate_args=False)

Registered heads (one module each; ``docs/heads.md`` compares them)
----------------------------------------------------------------------
``gaussian`` ("MLP", :mod:`.gaussian`)
    One output, the mean, trained with the squared error; the variance is the
    maximum-likelihood estimate (the training MSE, buffer ``var``).
``mixture`` ("MDN", :mod:`.mixture`)
    ``3 K`` outputs: a mixture of Gaussians (softplus scales with the floor ``min_scale``),
    trained on the density (``likelihood="continuous"``, the 2014 MDN) or on the 16-bit
    bin mass (``"discretised"``).
``logistic_mixture`` (:mod:`.logistic`)
    ``3 K`` outputs: a discretised mixture of logistics (PixelCNN++), trained on the bin mass.
``mulaw_softmax`` (:mod:`.mulaw`)
    256 outputs: a softmax over 8-bit mu-law classes (WaveNet), trained by cross-entropy.

Two measures for every head
---------------------------
``nll`` (nats per sample) is the continuous density over the normalised signal;
``bits`` (``-log2`` of the probability of the target's 16-bit code, :mod:`.discretise`)
puts every head on one scale that cannot go below 0. ``log_bin_mass`` computes the
latter; ``training_sums`` gives both for a training batch from the loss already computed.

One sampler per head
--------------------
Training metrics and generation call the same plain-tensor functions: ``params`` (float32,
also under autocast), ``draw_noise``, ``sample_from_noise`` (``T_w`` divides the logits,
0: the most probable component or class; ``T_s`` multiplies the scales, 0: no noise),
``sample_from_params`` (both), ``mean_from_params`` (the tempered mean),
``mode_from_params``. ``row_sampler(mode, T_w, T_s)`` gives the same value for one draw in
Python floats, from one row of ``project(features)`` and the same noise: generation uses it
for a few streams on CPU (heads without one are sampled with the tensor functions).

A head that defines only ``params`` and ``distribution_from_params`` (like the Laplace
example above) samples by inverting its CDF (``Distribution.icdf``) at one uniform number
per draw, and gets its bits from the Distribution's ``cdf``.
"""

from .base import HEADS, Head, build_head, register_head
from .discretise import Quantisation
from .gaussian import GaussianHead
from .mixture import MixtureHead
from .logistic import LogisticMixtureHead  # noqa: E402 (registered after the mixture it extends)
from .mulaw import MulawSoftmaxHead

__all__ = [
    "HEADS", "GaussianHead", "Head", "LogisticMixtureHead", "MixtureHead", "MulawSoftmaxHead", "Quantisation",
    "build_head", "register_head",
]
