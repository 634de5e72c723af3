"""Loss terms 1-7 of method.md §5.2, as pure functions of tensors.

Images are ``(H, W, C)`` float tensors (the layout of ``render_view``); masks are ``(H, W)`` in [0, 1].
Every function returns a scalar tensor, unweighted: the weights and their schedules live in
``configs/optim.py`` (``LossConfig``) and are applied by the training loop.
"""

from __future__ import annotations

import torch


def rgb_loss(rgb: torch.Tensor, ref_rgb: torch.Tensor) -> torch.Tensor:
    """Term 1: ``mean((I_hat - I_ref)^2)`` over the full image, background included.

    rgb, ref_rgb: ``(H, W, 3)``; the reference must be composited on the render's background colour.
    Example: rgb all 0.5, ref all 0.0 -> 0.25.
    """
    return (rgb - ref_rgb).square().mean()


def normal_map_for_loss(normal: torch.Tensor, opacity: torch.Tensor) -> torch.Tensor:
    """The composited normal map as the losses see it: ``N O + O - 1`` (method.md §4).

    The released code stores ``(N + 1) / 2 * O`` and converts it back with ``2 x - 1``, so background
    pixels read -1 and the silhouette edge blends towards -1. normal: ``(H, W, 3)`` unit (or 0) world
    normals; opacity: ``(H, W, 1)`` or ``(H, W)``. Returns ``(H, W, 3)``.
    """
    if opacity.dim() == 2:
        opacity = opacity[..., None]
    return normal * opacity + opacity - 1.0


def normal_loss(normal: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Term 2: MSE over masked pixels, ``sum_p m_p |N_hat_p - N_p|^2 / (3 sum_p m_p)``.

    normal, target: ``(H, W, 3)`` world normals in [-1, 1]; mask: ``(H, W)`` (binary in practice, a
    soft mask weights pixels). Equals ``F.mse_loss(normal[mask], target[mask])`` for a binary mask.
    Returns 0 for an empty mask. Example: one masked pixel, normal (1,0,0), target (0,1,0) -> 2/3.
    """
    m = mask[..., None].to(normal.dtype)
    denom = m.sum() * normal.shape[-1]
    return ((normal - target).square() * m).sum() / denom.clamp_min(1e-8)


def silhouette_loss(opacity: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Term 3: soft negative IoU, ``1 - sum(O M) / sum(O + M - O M)``.

    opacity: ``(H, W)`` or ``(H, W, 1)``; mask: ``(H, W)``. Example: O = M -> 0; disjoint -> 1.
    """
    if opacity.dim() == 3:
        opacity = opacity[..., 0]
    inter = (opacity * mask).sum()
    union = (opacity + mask - opacity * mask).sum()
    return 1.0 - inter / union.clamp_min(1e-8)


def sdf_prior_loss(sdf: torch.Tensor, prior_sdf: torch.Tensor) -> torch.Tensor:
    """Term 4: ``mean_i (s_i - s_prior_i)^2`` over ray samples, i.e. the mean squared residual delta^2.

    sdf, prior_sdf: ``(S,)`` or ``(S, 1)``. Example: residuals (0.1, -0.3) -> 0.05.
    """
    return (sdf - prior_sdf).square().mean()


def sdf_smoothness_loss(sdf: torch.Tensor, sdf_perturb: torch.Tensor) -> torch.Tensor:
    """Term 5: ``mean_i |s(x_i) - s(x_i + xi_i)|`` with ``xi ~ N(0, 0.01^2)`` drawn by the caller.

    sdf, sdf_perturb: ``(S,)`` or ``(S, 1)``. Example: (0.0, 0.2) vs (0.1, 0.1) -> 0.1.
    """
    return (sdf - sdf_perturb).abs().mean()


def normal_smoothness_2d_loss(normal_map: torch.Tensor) -> torch.Tensor:
    """Term 6: mean squared forward differences of the composited normal map, along x plus along y.

    ``mean((N[:, 1:] - N[:, :-1])^2) + mean((N[1:] - N[:-1])^2)`` on the ``(H, W, 3)`` map at the
    render's native resolution. Example: a 2x2 map whose right column differs by 1 in one channel ->
    x term 1/3, y term 0.
    """
    dx = normal_map[:, 1:] - normal_map[:, :-1]
    dy = normal_map[1:] - normal_map[:-1]
    return dx.square().mean() + dy.square().mean()


def normal_smoothness_3d_loss(normal: torch.Tensor, normal_perturb: torch.Tensor) -> torch.Tensor:
    """Term 7: ``mean |n(x) - n(x + xi)|`` element-wise over samples and the 3 components.

    normal, normal_perturb: ``(S, 3)`` unit normals at the samples and at the jittered samples.
    Example: n = (1,0,0), n' = (0,1,0) -> 2/3.
    """
    return (normal - normal_perturb).abs().mean()
