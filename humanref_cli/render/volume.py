"""VolSDF volume rendering with packed (ragged) samples, as the released renderer (method.md §4).

For every ray, inside the scene box:

1. **March** at a fixed step ``dt`` (default ``1.732 * 2 / 512``, at most 512 samples) from the box
   entry (or the ray origin when it starts inside), with one random offset per ray when
   ``stratified``; keep the samples whose midpoints fall in occupied cells of the occupancy grid.
   Samples that the SDF certifies as far outside are dropped first, at one SDF evaluation per group
   of 8 (:mod:`render.sdf_skip`; they would have been pruned in step 2).
2. **Prune** without gradients (nerfacc ``render_visibility``): evaluate the SDF, drop samples with
   ``alpha < 0.01`` and those behind a transmittance below ``1e-4``. Each ray's samples up to where
   it enters the body are evaluated first, the rest only for rays not yet opaque (the same mask).
   Pruned samples contribute nothing and get no gradient, exactly as in nerfacc; the kept ones are
   re-evaluated with gradients, so the transmittance of a kept sample is built from kept samples only.
3. **Shade** the kept samples with gradients: ``s``, colour, forward-difference normals and, for the
   regularisers, the normals and SDF at ``x + xi``, ``xi ~ N(0, 0.01^2)``. The field is evaluated in
   chunks of samples; above ``checkpoint_above`` samples under activation checkpointing, so memory
   grows with the number of samples (a few floats each), not with the network's activations.
4. **Composite**: first-order ``alpha_i = clamp(sigma(s_i) dt, 0, 1)``,
   ``w_i = alpha_i prod_{j<i} (1 - alpha_j)`` (nerfacc ``render_weight_from_alpha``).

Samples are packed: sample arrays have a leading ``S`` axis and ``sample_ray_indices (S,)`` says which
ray each belongs to (sorted, rays in order), as in nerfacc.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from humanref_cli.render.chunks import render_chunks
from humanref_cli.render.sdf_skip import skip_plan

DEFAULT_STEP = 1.732 * 2 / 512


def ray_box_intersect(origins: torch.Tensor, dirs: torch.Tensor, bound: float = 1.0, lo=None, hi=None):
    """Entry and exit distances ``(R,)`` of rays with the box ``[-bound, bound]^3`` (or ``[lo, hi]``,
    two ``(3,)`` corners, when given).

    ``t_near`` is clamped at 0 (no samples behind the origin); a ray that misses has ``t_far <= t_near``.
    """
    lo = -bound if lo is None else lo
    hi = bound if hi is None else hi
    safe = torch.where(dirs.abs() < 1e-12, torch.full_like(dirs, 1e-12), dirs)
    t0 = (lo - origins) / safe
    t1 = (hi - origins) / safe
    t_near = torch.minimum(t0, t1).amax(-1).clamp_min(0.0)
    t_far = torch.maximum(t0, t1).amin(-1)
    return t_near, t_far


def march_rays(
    origins: torch.Tensor,
    dirs: torch.Tensor,
    step_size: float = DEFAULT_STEP,
    max_samples: int = 512,
    occ=None,
    bound: float = 1.0,
    stratified: bool = False,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Candidate samples: ``(ray_indices (S,) int64, t_mid (S,))``, sorted by ray then by ``t``.

    Sample ``k`` of a ray covers ``[t_near + u + k dt, t_near + u + (k+1) dt]`` (``u ~ U[0, dt)`` per ray
    when ``stratified``, else 0), lies fully before ``t_far``, and is kept if its midpoint's cell is
    occupied (all cells count as occupied when ``occ`` is None).

    With ``occ``, only the ``k`` whose midpoints fall in the box around the occupied cells are looked at
    (the same samples: the others' cells are empty), which keeps the ``(rays, steps)`` arrays at the
    body's depth instead of the scene box's.
    """
    t_near, t_far = ray_box_intersect(origins, dirs, bound)
    if stratified:
        t_near = t_near + torch.rand(t_near.shape, generator=generator).to(t_near) * step_size
    n_steps = (
        int(torch.clamp(((t_far - t_near) / step_size).floor().max(), 0, max_samples)) if len(origins) else 0
    )
    k_lo, k_hi = _occupied_window(origins, dirs, t_near, step_size, n_steps, occ)
    width = int((k_hi - k_lo).max()) if len(origins) else 0
    k = k_lo[:, None] + torch.arange(max(width, 0), device=origins.device)[None]  # (R, K)
    t_mid = t_near[:, None] + (k.to(origins.dtype) + 0.5) * step_size
    valid = (k < k_hi[:, None]) & (t_mid + 0.5 * step_size <= t_far[:, None])
    if occ is not None:
        x = origins[:, None] + dirs[:, None] * t_mid[..., None]
        valid &= occ.occupied(x)
    ray_idx, k_idx = torch.nonzero(valid, as_tuple=True)
    return ray_idx, t_mid[ray_idx, k_idx]


def _occupied_window(origins, dirs, t_near, step_size: float, n_steps: int, occ):
    """Per-ray sample range ``[k_lo, k_hi)`` (int64 ``(R,)``) holding every midpoint inside the box of
    the occupied cells (``[0, n_steps)`` without ``occ``); one sample of slack at each end absorbs
    rounding, and the occupancy test still decides."""
    zero = torch.zeros(len(origins), dtype=torch.long, device=origins.device)
    if occ is None:
        return zero, zero + n_steps
    bounds = occ.occupied_bounds()
    if bounds is None:
        return zero, zero  # nothing occupied: no samples
    a_near, a_far = ray_box_intersect(origins, dirs, lo=bounds[0].to(origins), hi=bounds[1].to(origins))
    k_lo = torch.floor((a_near - t_near) / step_size - 0.5) - 1
    k_hi = torch.ceil((a_far - t_near) / step_size - 0.5) + 2
    k_lo = k_lo.clamp(0, n_steps).long()
    k_hi = torch.maximum(k_hi.clamp(0, n_steps).long(), k_lo)
    return k_lo, torch.where(a_far > a_near, k_hi, k_lo)


def exclusive_transmittance(alpha: torch.Tensor, ray_indices: torch.Tensor) -> torch.Tensor:
    """``T_i = prod_{j<i, same ray} (1 - alpha_j)`` for packed ``alpha (S,)`` sorted by ray: ``(S,)``.

    Computed as ``exp`` of an exclusive segmented sum of ``log(1 - alpha)`` in float64. ``1 - alpha`` is
    floored at 1e-10: a saturated sample (alpha = 1, which has no gradient through the clamp anyway)
    leaves a transmittance of 1e-10 instead of exactly 0.
    Example: alpha = [0.5, 0.5, 0.2] on rays [0, 0, 1] -> T = [1, 0.5, 1].
    """
    if alpha.numel() == 0:
        return alpha.clone()
    logs = torch.log(torch.clamp(1.0 - alpha.double(), min=1e-10))
    excl = torch.cumsum(logs, 0) - logs  # global exclusive sum
    first = torch.ones_like(ray_indices, dtype=torch.bool)
    first[1:] = ray_indices[1:] != ray_indices[:-1]
    seg_start = torch.cummax(torch.where(first, torch.arange(len(first), device=first.device), 0), 0).values
    return torch.exp(excl - excl[seg_start]).to(alpha.dtype)


def render_weights(alpha: torch.Tensor, ray_indices: torch.Tensor) -> torch.Tensor:
    """``w_i = alpha_i T_i`` (nerfacc ``render_weight_from_alpha``) for packed ``alpha (S,)``: ``(S,)``.

    Example: alpha = [0.5, 0.5, 0.2] on rays [0, 0, 1] -> w = [0.5, 0.25, 0.2].
    """
    return alpha * exclusive_transmittance(alpha, ray_indices)


def accumulate(values: torch.Tensor, ray_indices: torch.Tensor, n_rays: int) -> torch.Tensor:
    """Per-ray sums ``(R, C)`` of packed ``values (S, C)``."""
    out = torch.zeros(n_rays, values.shape[1], dtype=values.dtype, device=values.device)
    return out.index_add(0, ray_indices, values)


def prune_candidates(field, origins, dirs, ray_idx, t_mid, step_size, alpha_thre, early_stop_eps, front=None):
    """Keep mask ``(S,)`` of candidates: alpha >= alpha_thre and transmittance >= early_stop_eps.

    With ``front`` (``(S,)`` bool, a prefix of each ray's candidates) the fronts are evaluated first; a
    ray whose transmittance after its front is already below ``early_stop_eps`` keeps none of its later
    candidates (transmittance only falls), so they are pruned without evaluating the SDF. The mask is
    the one evaluating every candidate gives, whatever ``front`` is.
    """
    with torch.no_grad():
        if front is None or early_stop_eps <= 0:
            front = torch.ones_like(ray_idx, dtype=torch.bool)
        alpha = torch.zeros_like(t_mid)
        alpha[front] = _alpha(field, origins, dirs, ray_idx[front], t_mid[front], step_size)
        todo = front
        if not front.all():
            # the same log(1 - alpha) as exclusive_transmittance; a ray within a millionth of the
            # threshold counts as alive so that float rounding cannot prune what the full pass keeps
            logs = torch.log(torch.clamp(1.0 - alpha[front].double(), min=1e-10))
            log_t = torch.zeros(len(origins), dtype=torch.float64, device=alpha.device)
            alive = log_t.index_add_(0, ray_idx[front], logs) >= math.log(early_stop_eps) - 1e-6
            rest = ~front & alive[ray_idx]
            alpha[rest] = _alpha(field, origins, dirs, ray_idx[rest], t_mid[rest], step_size)
            todo = front | rest
        trans = exclusive_transmittance(alpha[todo], ray_idx[todo])
        keep = torch.zeros_like(todo)
        keep[todo] = (alpha[todo] >= alpha_thre) & (trans >= early_stop_eps)
        return keep


def _alpha(field, origins, dirs, ray_idx, t_mid, step_size) -> torch.Tensor:
    """Opacity ``(n,)`` of the samples ``(ray_idx, t_mid)``, without gradients, in chunks."""
    x = origins[ray_idx] + dirs[ray_idx] * t_mid[:, None]
    sdf = torch.cat([field.sdf(c) for c in x.split(262144)]) if len(x) else x[:, :1]
    return (field.density(sdf) * step_size).clamp(0, 1).reshape(-1)


def _shade(field, x: torch.Tensor, x_perturb: torch.Tensor | None):
    """Per-sample field outputs at ``x (n, 3)`` (and ``x_perturb``); a pure function for checkpointing."""
    sdf, prior, feat = field.sdf_and_features(x)
    rgb = field.color_from_features(feat)
    normal, _ = field.normal(x, sdf=sdf)
    if x_perturb is None:
        return sdf, prior, rgb, normal
    normal_p, sdf_p = field.normal(x_perturb)
    return sdf, prior, rgb, normal, normal_p, sdf_p


def _shade_chunked(field, x, x_perturb, sample_chunk: int, use_checkpoint: bool):
    outs = []
    for start in range(0, len(x), sample_chunk):
        xs = x[start : start + sample_chunk]
        xp = None if x_perturb is None else x_perturb[start : start + sample_chunk]
        if use_checkpoint:
            outs.append(checkpoint(_shade, field, xs, xp, use_reentrant=False))
        else:
            outs.append(_shade(field, xs, xp))
    n_out = 4 if x_perturb is None else 6
    if not outs:
        widths = (1, 1, 3, 3, 3, 1)[:n_out]
        return [x.new_zeros(0, w) for w in widths]
    return [torch.cat([o[i] for o in outs]) for i in range(n_out)]


def _kept_samples(
    field,
    origins,
    dirs,
    *,
    step_size,
    max_samples,
    occ,
    stratified,
    generator,
    alpha_thre,
    early_stop_eps,
    ray_chunk,
    skip_group,
):
    """March ``ray_chunk`` rays at a time and keep the samples that survive pruning: ``ray_idx (S,)``
    (sorted) and ``t_mid (S,)``; arguments as in :func:`render_rays`. No gradients flow here (the kept
    samples are shaded later)."""
    ray_idx, t_mid = [], []
    inv_std_now = float(field.inv_std().detach())
    for start in range(0, len(origins), ray_chunk):
        o, d = origins[start : start + ray_chunk], dirs[start : start + ray_chunk]
        ri, tm = march_rays(o, d, step_size, max_samples, occ, field.cfg.bound, stratified, generator)
        front = None
        if skip_group > 1 and alpha_thre > 0:
            # the certificate must sit below the pruning threshold for the kept samples to stay the same
            skip_alpha = min(1e-6, alpha_thre)
            args = (field.sdf, o, d, ri, tm, step_size, inv_std_now)
            plan = skip_plan(*args, group=skip_group, skip_alpha=skip_alpha)
            if plan is not None:
                ri, tm, front = ri[~plan.empty], tm[~plan.empty], plan.front[~plan.empty]
        keep = prune_candidates(field, o, d, ri, tm, step_size, alpha_thre, early_stop_eps, front)
        ray_idx.append(ri[keep] + start)
        t_mid.append(tm[keep])
    return torch.cat(ray_idx), torch.cat(t_mid)


def render_rays(
    field,
    origins: torch.Tensor,
    dirs: torch.Tensor,
    bg: torch.Tensor,
    occ=None,
    step_size: float = DEFAULT_STEP,
    max_samples: int = 512,
    stratified: bool = False,
    alpha_thre: float = 0.01,
    early_stop_eps: float = 1e-4,
    perturb_std: float | None = 0.01,
    bg_depth: float = 10.0,
    ray_chunk: int | None = None,
    sample_chunk: int | None = None,
    use_checkpoint: bool | None = None,
    checkpoint_above: int | None = None,
    skip_group: int = 8,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Render rays ``origins, dirs (R, 3)`` (unit directions, world frame) through ``field``.

    Args:
        bg: background colour ``(3,)`` or ``(R, 3)``.
        occ: :class:`~humanref_cli.render.occupancy.OccupancyGrid` to skip empty cells, or None.
        perturb_std: std of ``xi`` for the ``sample_*_perturb`` outputs; None (or no grad) skips them.
        ray_chunk: rays marched and pruned at a time (bounds the ``(rays, 512)`` candidate arrays);
            None: the device's (:mod:`render.chunks`), as for ``sample_chunk`` and ``checkpoint_above``.
        sample_chunk: kept samples shaded at a time (bounds the activations in memory).
        use_checkpoint: recompute the field's activations in backward (~1.4x the time, memory a few
            floats per sample instead of ~9 KB); default (None): when grad is enabled and there are
            more than ``checkpoint_above`` kept samples.
        skip_group: before pruning, drop the candidates that the SDF, read once per group of up to this
            many consecutive ones, certifies as empty, and prune each ray's front first
            (:mod:`render.sdf_skip`; same kept samples, a fraction of the SDF evaluations); 0 or 1
            evaluates every candidate, as does ``alpha_thre = 0``.

    Returns per ray:
        ``rgb (R, 3)`` = ``sum w_i c_i + bg (1 - O)``; ``opacity (R, 1)`` = ``O = sum w_i``;
        ``normal (R, 3)`` = ``N * O`` with ``N = normalize(sum w_i n_i)`` (world frame; unit where
        ``O = 1``, 0 in the background); ``normal_unit (R, 3)`` = ``N``; ``depth (R, 1)`` =
        ``sum w_i t_i + bg_depth (1 - O)`` (t from the ray origin). The released code's normal image
        ``(N + 1) / 2 * O``, read back by its losses as ``2 (.) - 1``, equals ``normal + opacity - 1``.
    And per kept sample (packed, ``S`` samples sorted by ray):
        ``sample_ray_indices (S,)``, ``sample_t (S,)``, ``sample_weights (S, 1)``, ``sample_alpha (S, 1)``,
        ``sample_sdf (S, 1)``, ``sample_prior_sdf (S, 1)``, ``sample_normal (S, 3)`` and, when perturbed,
        ``sample_normal_perturb (S, 3)``, ``sample_sdf_perturb (S, 1)`` at ``x + xi``;
        plus ``inv_std`` (scalar). ``S`` may be 0.
    """
    n_rays = len(origins)
    chunks = render_chunks(origins.device)
    ray_chunk = ray_chunk or chunks.ray_chunk
    sample_chunk = sample_chunk or chunks.sample_chunk
    checkpoint_above = chunks.checkpoint_above if checkpoint_above is None else checkpoint_above
    perturb = perturb_std is not None and torch.is_grad_enabled()
    ray_idx, t_mid = _kept_samples(
        field,
        origins,
        dirs,
        step_size=step_size,
        max_samples=max_samples,
        occ=occ,
        stratified=stratified,
        generator=generator,
        alpha_thre=alpha_thre,
        early_stop_eps=early_stop_eps,
        ray_chunk=ray_chunk,
        skip_group=skip_group,
    )

    x = origins[ray_idx] + dirs[ray_idx] * t_mid[:, None]
    x_perturb = None
    if perturb:
        x_perturb = x + torch.randn(x.shape, generator=generator).to(x) * perturb_std
    if use_checkpoint is None:
        use_checkpoint = torch.is_grad_enabled() and len(x) > checkpoint_above
    shaded = _shade_chunked(field, x, x_perturb, sample_chunk, use_checkpoint)
    sdf, prior, rgb_s, normal_s = shaded[:4]

    inv_std = field.inv_std()
    alpha = (field.density(sdf, inv_std) * step_size).clamp(0.0, 1.0)  # (S, 1)
    weights = render_weights(alpha.reshape(-1), ray_idx)[:, None]  # (S, 1)
    opacity = accumulate(weights, ray_idx, n_rays)
    bg = bg.to(origins).expand(n_rays, 3)
    rgb = accumulate(weights * rgb_s, ray_idx, n_rays) + bg * (1.0 - opacity)
    normal_unit = F.normalize(accumulate(weights * normal_s, ray_idx, n_rays), dim=-1, eps=1e-12)
    depth = accumulate(weights * t_mid[:, None], ray_idx, n_rays) + bg_depth * (1.0 - opacity)
    out = {
        "rgb": rgb,
        "opacity": opacity,
        "normal": normal_unit * opacity,
        "normal_unit": normal_unit,
        "depth": depth,
        "sample_ray_indices": ray_idx,
        "sample_t": t_mid,
        "sample_weights": weights,
        "sample_alpha": alpha,
        "sample_sdf": sdf,
        "sample_prior_sdf": prior,
        "sample_normal": normal_s,
        "inv_std": inv_std,
    }
    if perturb:
        out["sample_normal_perturb"], out["sample_sdf_perturb"] = shaded[4], shaded[5]
    return out


def render_view(
    field,
    c2w: torch.Tensor,
    height: int,
    width: int,
    bg: torch.Tensor,
    occ=None,
    radius: float = 1.0,
    **kwargs,
) -> dict[str, torch.Tensor]:
    """Render an orthographic view (``render/camera.py`` rays) of ``height x width`` pixels.

    ``bg`` is ``(3,)``, ``(H, W, 3)`` or ``(H * W, 3)``; ``kwargs`` go to :func:`render_rays`. Per-ray outputs
    come back as ``(H, W, C)`` images; ``sample_*`` entries stay packed (ray index = ``row * W + col``).
    """
    from humanref_cli.render.camera import orthographic_rays

    device = field.theta.device
    origins, dirs = orthographic_rays(c2w.to(device), height, width, radius)
    bg = bg.to(device)
    if bg.ndim == 3:
        bg = bg.reshape(-1, 3)
    out = render_rays(field, origins.reshape(-1, 3), dirs.reshape(-1, 3), bg, occ=occ, **kwargs)
    for key in ("rgb", "opacity", "normal", "normal_unit", "depth"):
        out[key] = out[key].reshape(height, width, -1)
    return out
