"""Reference attention through diffusers' attention-processor API (method.md §6.2, §7.2).

Pass A ("write") runs the UNet on the noised reference and stores, for every self-attention layer,
the LayerNorm-ed hidden states ``h_r (B, N, C)`` that enter it. Pass B ("read") runs the UNet on the
noised render; every self-attention then attends to ``[h ; h_r]`` of the same CFG branch::

    Attn(Q = W_q h, K = W_k [h ; h_r], V = W_v [h ; h_r])

Nothing is global: a :class:`ReferenceContext` (mode, bank, region masks) is passed to each UNet call
as ``cross_attention_kwargs={"ref": ctx}``; without it the processors are diffusers' default SDPA.

Region reweighting. The released code multiplies the softmax probabilities by a factor ``m[q, k]``
and renormalises each row. Since ``p m / sum(p m) = softmax(s + log m)`` exactly, we add ``log m`` as
an SDPA bias instead of materialising probabilities (``m = 0`` becomes ``-inf``; every row keeps at
least its own-image keys finite, so no row is empty). tests check it against explicit probabilities.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F

from humanref_cli.guidance.regions import to_grid, token_grid


class ReferenceBank:
    """Hidden states written by Pass A, keyed by attention-layer name; cleared after Pass B."""

    def __init__(self):
        self.states: dict[str, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.states)

    def clear(self) -> None:
        self.states.clear()


def region_bias(
    q_mem: torch.Tensor,
    own_mem: torch.Tensor,
    ref_mem: torch.Tensor | None,
    strategy: int,
    cross_weight: float = 0.3,
    shared_weight: float = 3.0,
) -> torch.Tensor:
    """Additive attention bias ``(Nq, Nk)`` float32, ``Nk = N_own + N_ref``, equal to ``log m``.

    ``*_mem (N, R)`` are bool region memberships; A[q, k] = 1 when q and k share a region.
    Strategy 0: ``m = A + w (1 - A)`` on every key (own and reference), w = ``cross_weight``.
    Strategies 1/2: own keys ``m = 1``; reference keys ``m = shared_weight`` if A else 0.
    """

    def shared(a, b):
        return (a.float() @ b.float().T) > 0

    if strategy == 0:
        keys = own_mem if ref_mem is None else torch.cat([own_mem, ref_mem])
        return torch.where(shared(q_mem, keys), 0.0, math.log(cross_weight))
    if strategy in (1, 2):
        own = torch.zeros(q_mem.shape[0], own_mem.shape[0], device=q_mem.device)
        if ref_mem is None:
            return own
        ref = torch.where(shared(q_mem, ref_mem), math.log(shared_weight), float("-inf"))
        return torch.cat([own, ref], dim=1)
    raise ValueError(f"strategy {strategy} has no region bias")


@dataclass
class RegionAttention:
    """Region memberships ``(R, h, w)`` bool at the latent grid for one guidance step.

    ``bias(mode, n_tokens, dtype)`` gives the bias of a block with ``n_tokens`` query tokens,
    re-binarised at that block's token grid, cached per grid (4 grids in SD 1.5, 16 layers).
    """

    ref: torch.Tensor
    ren: torch.Tensor
    strategy: int
    cross_weight: float = 0.3
    shared_weight: float = 3.0
    _cache: dict = field(default_factory=dict, repr=False)

    def bias(self, mode: str, n_tokens: int, dtype: torch.dtype) -> torch.Tensor | None:
        if mode == "write" and self.strategy != 0:
            return None  # strategies 1/2 leave own-image keys untouched; Pass A has no others
        key = (mode, n_tokens, dtype)
        if key not in self._cache:
            grid = token_grid(tuple(self.ref.shape[-2:]), n_tokens)
            ref = to_grid(self.ref, grid).flatten(1).T  # (N, R)
            if mode == "write":
                b = region_bias(ref, ref, None, self.strategy, self.cross_weight, self.shared_weight)
            else:
                ren = to_grid(self.ren, grid).flatten(1).T
                b = region_bias(ren, ren, ref, self.strategy, self.cross_weight, self.shared_weight)
            self._cache[key] = b.to(dtype)
        return self._cache[key]


@dataclass
class ReferenceContext:
    """Per-UNet-call instructions for the processors: ``write`` stores, ``read`` attends to the bank."""

    mode: Literal["write", "read"]
    bank: ReferenceBank
    regions: RegionAttention | None = None


def attend(
    attn, hidden_states: torch.Tensor, kv_states: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """Self-attention of ``hidden_states (B, Nq, C)`` over ``kv_states (B, Nk, C)`` with an optional
    additive ``bias (Nq, Nk)``, using the layer's own projections (SD 1.5 attention: no group/spatial
    norm, no q/k norm)."""
    if attn.group_norm is not None or attn.spatial_norm is not None or attn.norm_q is not None:
        raise NotImplementedError("reference attention supports SD 1.5-style attention layers only")
    batch = hidden_states.shape[0]
    query = attn.to_q(hidden_states)
    key = attn.to_k(kv_states)
    value = attn.to_v(kv_states)
    head_dim = key.shape[-1] // attn.heads
    query, key, value = (x.view(batch, -1, attn.heads, head_dim).transpose(1, 2) for x in (query, key, value))
    if bias is not None:
        bias = bias.to(query.dtype)
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=bias, scale=attn.scale)
    out = out.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim).to(query.dtype)
    out = attn.to_out[1](attn.to_out[0](out))
    if attn.residual_connection:
        out = out + hidden_states
    return out / attn.rescale_output_factor


class ReferenceAttnProcessor:
    """Processor for every attention layer: default SDPA unless a ``ref`` context reaches a
    self-attention call (``encoder_hidden_states is None``), then write or read the bank."""

    def __init__(self, name: str):
        from diffusers.models.attention_processor import AttnProcessor2_0

        self.name = name
        self.default = AttnProcessor2_0()

    def __call__(
        self,
        attn,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        ref: ReferenceContext | None = None,
    ) -> torch.Tensor:
        if ref is None or encoder_hidden_states is not None:
            return self.default(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        if attention_mask is not None or hidden_states.ndim != 3:
            raise NotImplementedError("reference attention expects (B, N, C) tokens and no attention_mask")
        n = hidden_states.shape[1]
        bias = ref.regions.bias(ref.mode, n, hidden_states.dtype) if ref.regions is not None else None
        if ref.mode == "write":
            ref.bank.states[self.name] = hidden_states.detach()
            return attend(attn, hidden_states, hidden_states, bias)
        h_ref = ref.bank.states[self.name]
        if h_ref.shape[0] != hidden_states.shape[0]:
            raise ValueError(
                f"{self.name}: reference batch {h_ref.shape[0]} != render batch {hidden_states.shape[0]}"
            )
        return attend(attn, hidden_states, torch.cat([hidden_states, h_ref], dim=1), bias)


def install_reference_attention(unet) -> dict[str, ReferenceAttnProcessor]:
    """Give every attention layer of ``unet`` a :class:`ReferenceAttnProcessor`; return them by name.

    ``set_attn_processor`` empties the dict it is given, so it gets a copy.
    """
    procs = {name: ReferenceAttnProcessor(name) for name in unet.attn_processors}
    unet.set_attn_processor(dict(procs))
    return procs
