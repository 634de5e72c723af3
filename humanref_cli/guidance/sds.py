"""Score-distillation maths (method.md §6.2): pure functions, no models.

Shapes: latents ``z (B, 4, h, w)``, timesteps ``t (B,)`` long, ``alphas_cumprod (T,)``.
"""

from __future__ import annotations

import torch


def sample_timesteps(
    batch: int, num_train_timesteps: int, t_min: float, t_max: float, device
) -> torch.Tensor:
    """``t ~ U{int(T t_min), ..., int(T t_max)}`` (both ends included, as threestudio), ``(B,)`` long."""
    lo, hi = int(num_train_timesteps * t_min), int(num_train_timesteps * t_max)
    return torch.randint(lo, hi + 1, (batch,), device=device, dtype=torch.long)


def add_noise(
    z0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor, alphas_cumprod: torch.Tensor
) -> torch.Tensor:
    """``z_t = sqrt(abar_t) z0 + sqrt(1 - abar_t) eps`` (DDPM forward process q(z_t | z_0))."""
    abar = alphas_cumprod[t].view(-1, 1, 1, 1).to(z0.dtype)
    return abar.sqrt() * z0 + (1 - abar).sqrt() * eps


def sds_weight(t: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """``w(t) = 1 - abar_t`` as ``(B, 1, 1, 1)`` float32."""
    return (1 - alphas_cumprod[t].float()).view(-1, 1, 1, 1)


def classifier_free_guidance(eps_cond: torch.Tensor, eps_uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """``eps_hat = eps_c + s (eps_c - eps_u)`` (released code; effective standard scale s + 1)."""
    return eps_cond + scale * (eps_cond - eps_uncond)


def sds_loss(z: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """Surrogate ``0.5 ||z - sg(z - grad)||^2`` summed over elements, divided by the batch.

    Its gradient with respect to ``z`` is exactly ``grad / B``: d/dz 0.5 (z - c)^2 = z - c = grad.
    """
    target = (z - grad).detach()
    return 0.5 * ((z.float() - target.float()) ** 2).sum() / z.shape[0]
