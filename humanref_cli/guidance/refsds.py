"""SDS and Ref-SDS guidance with region-aware reference attention (method.md §6.2, §7).

``DiffusionGuidance(rgb, opacity, ref_rgb, azimuth, elevation, step)`` returns the active unweighted
losses of a non-front view; the trainer multiplies them by ``guidance.weights``. Per Ref-SDS step:
two UNet forwards at batch 2 (the CFG branches batched), one VAE encode of the render with gradient
and one of the reference without.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from humanref_cli.configs.guidance import GuidanceConfig
from humanref_cli.guidance import sds
from humanref_cli.guidance.loading import SDModels
from humanref_cli.guidance.prompts import PromptEmbeddings, shift_azimuth, view_class
from humanref_cli.guidance.ref_attention import (
    ReferenceBank,
    ReferenceContext,
    RegionAttention,
    install_reference_attention,
)
from humanref_cli.guidance.regions import Regions, reference_masks, render_masks, to_grid


@dataclass
class SDSResult:
    """One (Ref-)SDS evaluation: ``loss`` (scalar), ``t (B,)``, ``eps``/``eps_hat``/``grad (B, 4, h, w)``."""

    loss: torch.Tensor
    t: torch.Tensor
    eps: torch.Tensor
    eps_hat: torch.Tensor
    grad: torch.Tensor


class DiffusionGuidance:
    """Stable-Diffusion guidance for non-front views: plain SDS (``cfg.mode == "sds"``) or Ref-SDS.

    Attributes: ``name`` ("sds" | "refsds"), ``models`` (role -> id, for the manifest), ``weights``
    (loss key -> weight), ``cfg``. Optional ``clip`` (:class:`ClipLosses`) and ``lpips`` (a callable
    ``(x, y) -> scalar`` on [0, 1] images) switch on the CLIP and multi-step-denoise terms.
    """

    def __init__(
        self,
        sd: SDModels,
        embeddings: PromptEmbeddings,
        cfg: GuidanceConfig,
        regions: Regions | None = None,
        models: dict[str, str] | None = None,
        clip=None,
        lpips=None,
    ):
        if cfg.mode not in ("sds", "refsds"):
            raise ValueError(f"DiffusionGuidance needs mode sds or refsds, got {cfg.mode!r}")
        if cfg.mode == "refsds" and cfg.strategy != 3 and regions is None:
            raise ValueError(f"strategy {cfg.strategy} needs reference regions")
        self.sd, self.embeddings, self.cfg, self.regions = sd, embeddings, cfg, regions
        self.name = cfg.mode
        self.models = dict(models or {})
        self.clip, self.lpips = clip, lpips
        self.weights = {
            "ref_sds": cfg.lambda_ref_sds,
            "clip": cfg.lambda_clip,
            "multi_denoise": cfg.lambda_multi,
        }
        self.image_size = cfg.image_size or sd.image_size
        self.latent_hw = (self.image_size // sd.vae_scale_factor,) * 2
        self.bank = ReferenceBank()
        if self.name == "refsds":
            self.processors = install_reference_attention(sd.unet)
        self._ref_grid = None
        if regions is not None and cfg.strategy != 3:
            self._ref_grid = to_grid(reference_masks(regions, cfg.strategy), self.latent_hw).to(sd.device)

    # -- building blocks ------------------------------------------------------------------------
    def resize(self, image: torch.Tensor) -> torch.Tensor:
        """``(1, C, H, W)`` -> ``(1, C, S, S)`` at the diffusion input size (bilinear, as threestudio)."""
        if image.shape[-2:] == (self.image_size, self.image_size):
            return image
        return F.interpolate(image, (self.image_size, self.image_size), mode="bilinear", align_corners=False)

    def encode(self, rgb: torch.Tensor) -> torch.Tensor:
        """Images ``(B, 3, S, S)`` in [0, 1] -> scaled latents ``(B, 4, h, w)`` in the model dtype."""
        posterior = self.sd.vae.encode(rgb.to(self.sd.dtype) * 2 - 1).latent_dist
        z = posterior.sample() if self.cfg.vae_sample else posterior.mean
        return z * self.sd.latent_scale

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> images ``(B, 3, S, S)`` float32 in [0, 1]."""
        x = self.sd.vae.decode(z.to(self.sd.dtype) / self.sd.latent_scale).sample
        return (x.float() / 2 + 0.5).clamp(0, 1)

    def region_attention(self, opacity: torch.Tensor | None) -> RegionAttention | None:
        """Region memberships of this step (None for strategy 3 or plain SDS)."""
        if self.name != "refsds" or self._ref_grid is None:
            return None
        ren = to_grid(render_masks(opacity, self.regions, self.cfg.strategy), self.latent_hw)
        return RegionAttention(
            self._ref_grid,
            ren,
            self.cfg.strategy,
            self.cfg.cross_region_weight,
            self.cfg.shared_region_weight,
        )

    @torch.no_grad()
    def predict_noise(
        self,
        z_t: torch.Tensor,
        z_ref_t: torch.Tensor | None,
        t: torch.Tensor,
        view: str,
        regions: RegionAttention | None = None,
    ) -> torch.Tensor:
        """CFG noise prediction ``eps_hat (B, 4, h, w)`` float32 for the noised render ``z_t``.

        Ref-SDS: Pass A writes the noised reference ``z_ref_t`` (same t) into the bank, Pass B reads
        it; both batch ``[cond, uncond]``. The bank is emptied before returning.
        """
        cond, uncond = self.embeddings.get(view)
        batch = z_t.shape[0]
        emb = torch.cat([cond.expand(batch, -1, -1), uncond.expand(batch, -1, -1)])
        tt = torch.cat([t, t])
        unet, dtype = self.sd.unet, self.sd.dtype
        try:
            read = None
            if self.name == "refsds":
                write = ReferenceContext("write", self.bank, regions)
                unet(torch.cat([z_ref_t, z_ref_t]).to(dtype), tt, emb, cross_attention_kwargs={"ref": write})
                read = {"ref": ReferenceContext("read", self.bank, regions)}
            out = unet(torch.cat([z_t, z_t]).to(dtype), tt, emb, cross_attention_kwargs=read).sample
        finally:
            self.bank.clear()
        eps_cond, eps_uncond = out.float().chunk(2)
        return sds.classifier_free_guidance(eps_cond, eps_uncond, self.cfg.cfg_scale)

    def sds_on_latent(
        self,
        z: torch.Tensor,
        z_ref: torch.Tensor | None,
        view: str,
        regions: RegionAttention | None = None,
        t: torch.Tensor | None = None,
        eps: torch.Tensor | None = None,
    ) -> SDSResult:
        """(Ref-)SDS on a latent ``z (B, 4, h, w)``: ``dL/dz = w(t) (eps_hat - eps)`` (per batch item).

        The same ``t`` and ``eps`` noise the render and the reference.
        """
        acp = self.sd.alphas_cumprod
        if t is None:
            t = sds.sample_timesteps(
                z.shape[0], self.sd.num_train_timesteps, self.cfg.t_min, self.cfg.t_max, z.device
            )
        if eps is None:
            eps = torch.randn(z.shape, device=z.device, dtype=torch.float32)
        with torch.no_grad():
            z_t = sds.add_noise(z.detach().float(), eps, t, acp)
            z_ref_t = None if z_ref is None else sds.add_noise(z_ref.float(), eps, t, acp)
        eps_hat = self.predict_noise(z_t, z_ref_t, t, view, regions)
        grad = torch.nan_to_num(sds.sds_weight(t, acp) * (eps_hat - eps))
        return SDSResult(sds.sds_loss(z, grad), t, eps, eps_hat, grad)

    # -- the trainer's entry point ----------------------------------------------------------------
    def __call__(
        self,
        rgb: torch.Tensor,
        opacity: torch.Tensor,
        ref_rgb: torch.Tensor,
        azimuth: float,
        elevation: float,
        step: int,
        bg: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Unweighted losses of one non-front view.

        ``rgb``/``ref_rgb (1, 3, H, W)`` in [0, 1], the reference composited on the render's background;
        ``opacity (1, 1, H, W)``; ``bg (3,)`` that background colour (estimated from ``ref_rgb`` if None).
        Keys: ``ref_sds`` (step >= start_step), ``clip`` (step < clip_end_step, CLIP present; on
        near-front views with a small t it also replaces ``ref_sds``, see :meth:`clip_replaces_sds`),
        ``multi_denoise`` (step >= multi_start_step, LPIPS present).
        """
        cfg, view = self.cfg, view_class(azimuth, elevation)
        losses: dict[str, torch.Tensor] = {}
        if self.clip is not None and step < cfg.clip_end_step:
            if bg is None:
                bg = self.background_colour(ref_rgb)
            losses["clip"] = self.clip(rgb, opacity, ref_rgb, bg, view)
        diffusion = step >= cfg.start_step
        multi = self.lpips is not None and step >= cfg.multi_start_step
        if not (diffusion or multi):
            return losses
        rgb_s = self.resize(rgb)
        z = self.encode(rgb_s)
        z_ref = None
        if self.name == "refsds":
            with torch.no_grad():
                z_ref = self.encode(self.resize(ref_rgb))
        regions = self.region_attention(opacity)
        if diffusion:
            t = sds.sample_timesteps(1, self.sd.num_train_timesteps, cfg.t_min, cfg.t_max, z.device)
            eps = torch.randn(z.shape, device=z.device, dtype=torch.float32)
            if self.clip_replaces_sds(step, azimuth, int(t)):
                if bg is None:
                    bg = self.background_colour(ref_rgb)
                one_step = self.clip_on_denoised(z, z_ref, view, regions, t, eps, opacity, ref_rgb, bg)
                losses["clip"] = losses.get("clip", 0.0) + cfg.clip_sds_weight * one_step
            else:
                losses["ref_sds"] = self.sds_on_latent(z, z_ref, view, regions, t=t, eps=eps).loss
        if multi:
            from humanref_cli.guidance.multistep import reference_guided_denoise

            target = reference_guided_denoise(self, z.detach(), z_ref, view, regions)
            losses["multi_denoise"] = self.lpips(rgb_s.float(), target)
        return losses

    def clip_replaces_sds(self, step: int, azimuth: float, t: int) -> bool:
        """method.md §6.3: from start_step to clip_end_step, a view with |azimuth| < 30 and a sampled
        t <= clip_sds_max_t T takes CLIP losses on a one-step-denoised decode instead of SDS."""
        cfg = self.cfg
        return (
            self.clip is not None
            and cfg.start_step <= step < cfg.clip_end_step
            and abs(shift_azimuth(azimuth)) < 30.0
            and t <= int(cfg.clip_sds_max_t * self.sd.num_train_timesteps)
        )

    def clip_on_denoised(self, z, z_ref, view, regions, t, eps, opacity, ref_rgb, bg) -> torch.Tensor:
        """CLIP losses (unweighted) of ``D(x_{t-1})``: ``z`` noised to t, one UniPC step to t - 1 with the
        (Ref-)CFG noise prediction, decoded; the gradient flows through the step, decode and encode.

        [I] "x_t -> x_{t-1}" is read as UniPC set to all T training timesteps, so one step moves t by one.
        """
        from diffusers import UniPCMultistepScheduler

        acp = self.sd.alphas_cumprod
        z_t = sds.add_noise(z.float(), eps, t, acp)
        with torch.no_grad():
            z_ref_t = None if z_ref is None else sds.add_noise(z_ref.float(), eps, t, acp)
        eps_hat = self.predict_noise(z_t.detach(), z_ref_t, t, view, regions)
        scheduler = UniPCMultistepScheduler.from_config(self.sd.scheduler.config, timestep_spacing="linspace")
        scheduler.set_timesteps(self.sd.num_train_timesteps, device=z.device)
        z_prev = scheduler.step(eps_hat, int(t), z_t).prev_sample
        image = self.sd.vae.decode(z_prev.to(self.sd.dtype) / self.sd.latent_scale).sample
        image = (image.float() / 2 + 0.5).clamp(0, 1)
        size = image.shape[-2:]
        op = F.interpolate(opacity.float(), size, mode="nearest")
        return self.clip(image, op, self.resize(ref_rgb), bg, view)

    def background_colour(self, ref_rgb: torch.Tensor) -> torch.Tensor:
        """The colour ``(3,)`` the reference was composited on, read where the silhouette is empty."""
        if self.regions is None:
            return ref_rgb[0, :, 0, 0]
        m = F.interpolate(
            self.regions.mask[None, None].to(ref_rgb.device), ref_rgb.shape[-2:], mode="nearest"
        )
        outside = m[0, 0] < 0.5
        return ref_rgb[0][:, outside].mean(dim=1) if outside.any() else ref_rgb[0, :, 0, 0]
