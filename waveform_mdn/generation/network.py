"""The predictor evaluated one step at a time: plain weight tensors for the trunk, a copy of
the head for the parameters, and the phone-context part of the first layer per position.

Nothing here samples: :mod:`.engine` turns the head's parameters into values with the
head's own functions (``sample_from_noise``, ``mean_from_params``, ``mode_from_params``).
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .inputs import GenerationError

_ACTIVATIONS = (("tanh", nn.Tanh), ("relu", nn.ReLU), ("gelu", nn.GELU), ("sigmoid", nn.Sigmoid))


def predictor_of(model: nn.Module) -> nn.Module:
    """The ``Predictor`` of a ``WaveformPredictor`` (its ``.net``), or the Predictor itself."""
    net = getattr(model, "net", None)
    if net is not None and hasattr(net, "context_bias"):
        return net
    if hasattr(model, "context_bias") and hasattr(model, "window_proj"):
        return model
    raise TypeError(f"expected a WaveformPredictor or a Predictor, not {type(model).__name__}")


def _activation_name(module: nn.Module) -> str:
    for name, cls in _ACTIVATIONS:
        if isinstance(module, cls):
            return name
    return "other"


def gaussian_scale(head: nn.Module, variance: str = "valid") -> float:
    """Noise scale of the Gaussian ("MLP") head: ``sqrt`` of the validation MSE (``"valid"``,
    falling back to the stored variance when no validation ran) or of the stored training
    MSE (``"train"``)."""
    floor = float(getattr(head, "min_scale", 0.0)) ** 2
    var = float(head.var)
    if variance == "valid":
        v = float(getattr(head, "valid_mse", torch.tensor(float("nan"))))
        if math.isfinite(v) and v > 0:
            var = v
    elif variance != "train":
        raise GenerationError(f"variance must be 'valid' or 'train', not {variance!r}")
    return math.sqrt(max(var, floor))


class StepNetwork:
    """Trunk weights as plain tensors, evaluated into preallocated buffers, and a copy of
    the head that reads the trunk's output.

    With ``fold_tanh`` (and a tanh trunk) every ``tanh(a)`` is evaluated as
    ``2 sigmoid(2 a) - 1`` (``torch.tanh`` is about 6x slower than ``torch.sigmoid`` on
    CPU): the factor 2 of the input goes into the weights of the layer, the affine ``2 s - 1``
    into the layer (or head projection) that reads it. Same values up to float rounding.
    The head copy gets the Gaussian head's ``gaussian_variance`` (see :func:`gaussian_scale`).
    """

    def __init__(self, net: nn.Module, n_streams: int, device: torch.device, fold_tanh: bool = True,
                 gaussian_variance: str = "valid"):
        self.act = _activation_name(net.act0)
        self.fold = fold_tanh and self.act == "tanh"
        self.input_scale = 2.0 if self.fold else 1.0  # of the first layer (context bias included)
        self.activate = self._activation(net.act0)
        f32 = dict(device=device, dtype=torch.float32)
        self.w1t = (self.input_scale * net.window_proj.weight.detach().to(**f32)).t().contiguous()
        self.h_first = torch.empty(n_streams, self.w1t.shape[1], **f32)
        self.layers: list[tuple[Tensor, Tensor, Tensor]] = []
        mods = list(net.trunk)
        linears = [m for m in mods if isinstance(m, nn.Linear)]
        acts = [m for m in mods if not isinstance(m, nn.Linear)]
        if len(acts) != len(linears) or any(_activation_name(a) != self.act for a in acts):
            raise GenerationError("generation needs a trunk of Linear/activation pairs with one activation")
        for lin in linears:
            w, b = self._reads_activation(lin.weight.detach().to(**f32), lin.bias.detach().to(**f32))
            w, b = self.input_scale * w, self.input_scale * b
            self.layers.append((w.t().contiguous(), b.contiguous(), torch.empty(n_streams, w.shape[0], **f32)))
        self.head = self._head_copy(net.head, device, gaussian_variance)

    def _reads_activation(self, w: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        """Weights of a layer that reads s = sigmoid(2a) instead of h = tanh(a) = 2s - 1."""
        if not self.fold:
            return w, b
        return 2.0 * w, b - w.sum(1)

    def _head_copy(self, head: nn.Module, device: torch.device, variance: str) -> nn.Module:
        head = copy.deepcopy(head).to(device=device, dtype=torch.float32).eval()
        with torch.no_grad():
            w, b = self._reads_activation(head.proj.weight.float(), head.proj.bias.float())
            head.proj.weight.copy_(w)
            head.proj.bias.copy_(b)
            if hasattr(head, "var") and hasattr(head, "valid_mse"):  # the Gaussian ("MLP") head
                head.var.fill_(gaussian_scale(head, variance) ** 2)
        return head

    def _activation(self, module: nn.Module):
        """The activation, in place where torch allows (chosen once, called every step)."""
        if self.fold or self.act == "sigmoid":
            return lambda h: torch.sigmoid(h, out=h)
        if self.act == "tanh":
            return lambda h: torch.tanh(h, out=h)
        if self.act == "relu":
            return torch.relu_
        return F.gelu if self.act == "gelu" else module

    def features(self, window: Tensor, context_bias: Tensor) -> Tensor:
        """What the head copy reads, for ``window [N, W]`` and the first layer's context
        part (the trunk's output; with the fold, its sigmoid form)."""
        h = self.activate(torch.addmm(context_bias, window, self.w1t, out=self.h_first))
        for wt, b, out in self.layers:
            h = self.activate(torch.addmm(b, h, wt, out=out))
        return h


class ContextBias:
    """Context part of the first layer (plus its bias) for every position and stream.

    ``Predictor.context_bias`` is evaluated once per distinct combination of the phone
    fields (a handful per utterance); a range of positions then costs one ``index_select``
    (and one ``addcmul`` for the ``position`` field, which is linear in the model).
    ``fields``: ``[n, N]`` tensors (position-major); ``scale`` multiplies everything (the
    tanh fold of :class:`StepNetwork`).
    """

    def __init__(self, net: nn.Module, fields: dict[str, Tensor], n: int, n_streams: int, scale: float,
                 device: torch.device):
        self.n_streams = int(n_streams)
        ids, self.inv = self._combinations(net, fields, n, self.n_streams)
        rows = int(self.inv.max()) + 1 if self.inv.numel() else 1
        with torch.no_grad():
            zeros = torch.zeros(rows, device=net.window_proj.weight.device)
            table = net.context_bias(ids.get("phone"), ids.get("next_phone"), ids.get("prev_phone"),
                                     zeros if net.use_position else None)
        self.hidden = int(table.shape[-1])
        self.table = (table.detach().float().expand(rows, self.hidden) * scale).to(device).contiguous()
        self.inv = self.inv.to(device)
        self.pos = fields["position"].float().to(device) if net.use_position else None
        self.pos_w = (net.position_weight.detach().float() * scale).to(device) if net.use_position else None

    @staticmethod
    def _combinations(net: nn.Module, fields: dict[str, Tensor], n: int,
                      n_streams: int) -> tuple[dict[str, Tensor], Tensor]:
        """(phone ids of each distinct combination, ``[n, N]`` index of each position's)."""
        device = net.window_proj.weight.device
        pf = list(net.phone_fields)
        if not pf:
            return {}, torch.zeros(n, n_streams, dtype=torch.int64)
        V = int(net.n_phone_ids)
        key = torch.zeros(fields[pf[0]].shape, dtype=torch.int64)
        for f in pf:
            key = key * V + fields[f].long().cpu()
        uniq, inv = torch.unique(key.reshape(-1), return_inverse=True)
        ids = {}
        for f in reversed(pf):
            ids[f] = (uniq % V).to(device)
            uniq = uniq // V
        return ids, inv.view(key.shape)

    def rows(self, t0: int, t1: int) -> Tensor:
        """``[t1 - t0, N, H]``: the context part of positions ``t0 .. t1-1``."""
        out = self.table.index_select(0, self.inv[t0:t1].reshape(-1)).view(t1 - t0, self.n_streams, self.hidden)
        if self.pos is not None:
            out.addcmul_(self.pos[t0:t1, :, None], self.pos_w)
        return out
