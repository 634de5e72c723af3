"""Multi-step reference-guided denoise target (method.md §6.4, steps >= 9600, non-front views).

A 30-step UniPC schedule is set and only its last ``int(0.2 * 30) = 6`` timesteps run (about
t = 200 ... 33 for SD 1.5): the render latent is noised to the first, then each step re-noises the
reference to the current t with fresh noise and predicts ``eps_hat`` with Pass A + Pass B + CFG, exactly
as Ref-SDS does. The decoded result ``D(I_hat)`` is a fixed image-space target for LPIPS.
"""

from __future__ import annotations

import torch

from humanref_cli.guidance import sds


def denoise_timesteps(scheduler_config, schedule_steps: int, keep: float, device) -> tuple:
    """A fresh UniPC scheduler set to ``schedule_steps`` and the last ``int(keep * steps)`` timesteps."""
    from diffusers import UniPCMultistepScheduler

    # fresh each call (UniPC keeps a history); linspace spacing as the released code's diffusers had,
    # whatever the folder's config says: 30 steps -> last six t = 200, 166, 133, 100, 67, 33
    scheduler = UniPCMultistepScheduler.from_config(scheduler_config, timestep_spacing="linspace")
    scheduler.set_timesteps(schedule_steps, device=device)
    n = max(1, int(keep * schedule_steps))
    return scheduler, scheduler.timesteps[-n:]


@torch.no_grad()
def reference_guided_denoise(guidance, z: torch.Tensor, z_ref: torch.Tensor | None, view: str, regions=None):
    """Denoised image ``(B, 3, S, S)`` float32 in [0, 1] from the render latent ``z (B, 4, h, w)``.

    ``guidance`` is a :class:`~humanref_cli.guidance.refsds.DiffusionGuidance` (its models, prompts,
    CFG scale and reference attention); ``z_ref`` None runs plain CFG denoising.
    """
    cfg, sd = guidance.cfg, guidance.sd
    scheduler, timesteps = denoise_timesteps(
        sd.scheduler.config, cfg.multi_schedule_steps, cfg.multi_keep, z.device
    )
    acp = sd.alphas_cumprod
    batch = z.shape[0]
    first = timesteps[:1].expand(batch)
    z_t = sds.add_noise(z.float(), torch.randn(z.shape, device=z.device), first, acp)
    for t in timesteps:
        tb = t.view(1).expand(batch).long()
        z_ref_t = None
        if z_ref is not None:
            z_ref_t = sds.add_noise(z_ref.float(), torch.randn(z_ref.shape, device=z.device), tb, acp)
        eps_hat = guidance.predict_noise(z_t, z_ref_t, tb, view, regions)
        z_t = scheduler.step(eps_hat, t, z_t).prev_sample
    return guidance.decode(z_t)
