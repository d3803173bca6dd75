"""TD-MPC2 building blocks (official tdmpc2/common/layers.py): NormedLinear, SimNorm, the mlp builder,
the vectorized Q ensemble, and the weight initialisation of official common/world_model.py."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class SimNorm(nn.Module):
    """Simplicial normalization: softmax within consecutive groups of `dim` features.
    (..., D) -> (..., D), every group of `dim` entries sums to 1."""

    def __init__(self, dim: int = 8):
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.view(*shape[:-1], -1, self.dim)
        return F.softmax(x, dim=-1).view(shape)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class NormedLinear(nn.Linear):
    """Linear -> Dropout (if p > 0) -> LayerNorm -> activation (Mish by default).
    State-dict names: `weight`, `bias`, `ln.weight`, `ln.bias` as in TD-MPC2."""

    def __init__(self, in_features: int, out_features: int, dropout: float = 0.0,
                 act: nn.Module | None = None):
        super().__init__(in_features, out_features)
        self.ln = nn.LayerNorm(out_features)
        self.act = act if act is not None else nn.Mish()
        self.dropout = nn.Dropout(dropout) if dropout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = super().forward(x)
        if self.dropout is not None:
            x = self.dropout(x)
        return self.act(self.ln(x))


def mlp(in_dim: int, hidden: list[int], out_dim: int, act: nn.Module | None = None,
        dropout: float = 0.0) -> nn.Sequential:
    """NormedLinear(Mish) hidden layers (dropout only in the first), then a NormedLinear with
    `act` if given, else a plain Linear (no LayerNorm)."""
    dims = [in_dim] + list(hidden) + [out_dim]
    layers: list[nn.Module] = [NormedLinear(dims[i], dims[i + 1], dropout=dropout if i == 0 else 0.0)
                               for i in range(len(dims) - 2)]
    layers.append(NormedLinear(dims[-2], dims[-1], act=act) if act is not None
                  else nn.Linear(dims[-2], dims[-1]))
    return nn.Sequential(*layers)


class _EnsembleLayerNorm(nn.Module):
    """Per-member LayerNorm affine parameters: weight, bias of shape (N_q, out)."""

    def __init__(self, num: int, features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num, features))
        self.bias = nn.Parameter(torch.zeros(num, features))


class _EnsembleLinear(nn.Module):
    """Stacked Linear parameters weight (N_q, out, in), bias (N_q, out), optional LayerNorm."""

    def __init__(self, num: int, in_features: int, out_features: int, normed: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num, out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(num, out_features))
        self.ln = _EnsembleLayerNorm(num, out_features) if normed else None


class QEnsemble(nn.Module):
    """N_q Q-functions mlp(in, [M, M], K, dropout=p) evaluated together.

    Parameters are stacked with a leading member axis, so the state-dict keys are the NEW
    official names `params.{layer}.weight|bias|ln.weight|ln.bias` (WorldModel._Qs). Each member
    gets its own dropout mask (dropout after the first Linear, before its LayerNorm).
    """

    def __init__(self, num_q: int, in_dim: int, mlp_dim: int, out_dim: int, dropout: float):
        super().__init__()
        self.num_q, self.dropout_p = num_q, dropout
        self.params = nn.ModuleList([
            _EnsembleLinear(num_q, in_dim, mlp_dim, normed=True),
            _EnsembleLinear(num_q, mlp_dim, mlp_dim, normed=True),
            _EnsembleLinear(num_q, mlp_dim, out_dim, normed=False),
        ])
        # When True, dropout is applied even in eval mode: the behaviour of the OLD Q ensemble
        # (functorch) that produced the TD-MPC-Opt checkpoints and the paper's numbers.
        self.dropout_at_inference = False

    def _member_params(self, layer, members, detach):
        params = [layer.weight, layer.bias] + ([layer.ln.weight, layer.ln.bias] if layer.ln is not None else [])
        if detach:
            params = [p.detach() for p in params]
        return params if members is None else [p[members] for p in params]

    def forward(self, x: torch.Tensor, members: torch.Tensor | None = None,
                detach: bool = False) -> torch.Tensor:
        """x (..., in) shared by all members -> logits (n, ..., K), n = N_q or len(members).
        `detach` cuts the gradient to the parameters (not to x)."""
        lead = x.shape[:-1]
        w, b = self._member_params(self.params[0], members, detach)[:2]
        h = torch.matmul(x.reshape(1, -1, x.shape[-1]), w.transpose(1, 2)) + b.unsqueeze(1)
        out = self.forward_hidden(h, members, detach)
        return out.reshape(out.shape[0], *lead, out.shape[-1])

    def forward_hidden(self, h: torch.Tensor, members: torch.Tensor | None = None,
                       detach: bool = False, mish=F.mish) -> torch.Tensor:
        """Continue from the first Linear's output h (n, N, M) -> logits (n, N, K).
        `mish`: the activation function (the planner passes math.mish_inference)."""
        for i, layer in enumerate(self.params):
            params = self._member_params(layer, members, detach)
            if i > 0:
                h = torch.baddbmm(params[1].unsqueeze(1), h, params[0].transpose(1, 2))
            if layer.ln is not None:
                if i == 0 and self.dropout_p > 0 and (self.training or self.dropout_at_inference):
                    h = F.dropout(h, self.dropout_p, training=True)  # independent mask per member
                h = F.layer_norm(h, h.shape[-1:]) * params[2].unsqueeze(1) + params[3].unsqueeze(1)
                h = mish(h)
        return h


def init_weights(module: nn.Module) -> None:
    """Official TD-MPC2 init: Linear weights ~ N(0, 0.02) truncated at +-2 (absolute), biases 0;
    Embedding ~ U(-0.02, 0.02); LayerNorm weight 1, bias 0; ensemble members alike."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.uniform_(module.weight, -0.02, 0.02)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, _EnsembleLinear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        nn.init.zeros_(module.bias)
