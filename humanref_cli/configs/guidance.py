"""Diffusion guidance settings: Ref-SDS, region-aware attention, CLIP and multi-step denoise terms.

Every default is the released HumanRef code's (method.md §5–§7). Steps are *global* optimisation steps
(coarse covers 0–3000, refine 3000–12000), so the same schedule serves both stages.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from humanref_cli.configs.base import PRESETS
from humanref_cli.errors import UsageError


@dataclass(frozen=True)
class GuidanceConfig:
    mode: Literal["none", "sds", "refsds"] = field(
        default="refsds",
        metadata={
            "help": "Diffusion guidance: none, plain SDS, or Ref-SDS (reference attention, the method)."
        },
    )
    strategy: Literal[0, 1, 2, 3] = field(
        default=0,
        metadata={
            "help": "Region-aware attention (method.md §7): 0 cross-region x0.3 (default), 1 five regions "
            "x3/x0 on reference keys, 2 body/background only, 3 no masks."
        },
    )
    cfg_scale: float = field(
        default=7.0, metadata={"help": "CFG s in eps_c + s (eps_c - eps_u) (effective scale s + 1)."}
    )
    t_min: float = field(default=0.2, metadata={"help": "Smallest sampled timestep, fraction of T."})
    t_max: float = field(default=0.6, metadata={"help": "Largest sampled timestep, fraction of T."})
    start_step: int = field(default=600, metadata={"help": "Diffusion guidance starts at this global step."})
    cross_region_weight: float = field(
        default=0.3, metadata={"help": "Strategy 0: attention between different regions is scaled by this."}
    )
    shared_region_weight: float = field(
        default=3.0,
        metadata={"help": "Strategies 1/2: reference keys in the query's region are scaled by this."},
    )
    lambda_ref_sds: float = field(default=1e-3, metadata={"help": "Weight of the (Ref-)SDS loss."})
    lambda_clip: float = field(default=1.0, metadata={"help": "Weight of the CLIP image and text losses."})
    clip_end_step: int = field(default=2000, metadata={"help": "CLIP losses run before this global step."})
    clip_sds_max_t: float = field(
        default=0.4,
        metadata={
            "help": "Before clip_end_step, near-front views with t <= this (fraction of T) swap SDS for CLIP."
        },
    )
    clip_sds_weight: float = field(
        default=10.0, metadata={"help": "Weight of the CLIP losses that replace SDS on those steps."}
    )
    lambda_multi: float = field(
        default=20.0, metadata={"help": "Weight of the multi-step-denoise LPIPS loss."}
    )
    multi_start_step: int = field(
        default=9600, metadata={"help": "Multi-step reference-guided denoise runs from this global step."}
    )
    multi_schedule_steps: int = field(
        default=30, metadata={"help": "UniPC schedule length of the multi-step denoise (its last 20% run)."}
    )
    multi_keep: float = field(
        default=0.2,
        metadata={"help": "Fraction of the multi-step schedule that is run (0.2 x 30 = 6 steps)."},
    )
    vae_sample: bool = field(
        default=True, metadata={"help": "Sample the VAE posterior (the released code) instead of its mean."}
    )
    half_precision: bool = field(
        default=True,
        metadata={"help": "Run the frozen diffusion models in fp16 on CUDA (fp32 on CPU always)."},
    )
    image_size: int | None = field(
        default=None,
        metadata={
            "help": "Diffusion input size in pixels; None reads it from the model configs (512 for SD 1.5)."
        },
    )
    require_guidance: bool = field(
        default=False,
        metadata={"help": "Fail (exit 5) instead of running guidance-off when Stable Diffusion is missing."},
    )

    def __post_init__(self):
        if self.mode not in ("none", "sds", "refsds"):
            raise UsageError(f"guidance.mode must be none, sds or refsds, got {self.mode!r}")
        if self.strategy not in (0, 1, 2, 3):
            raise UsageError(f"guidance.strategy must be 0, 1, 2 or 3, got {self.strategy!r}")
        if not 0.0 <= self.t_min < self.t_max <= 1.0:
            raise UsageError(
                f"guidance.t_min/t_max must satisfy 0 <= t_min < t_max <= 1, got {self.t_min}, {self.t_max}"
            )


def preset(name: str) -> GuidanceConfig:
    """The guidance config of a preset; the schedule is the paper's in all of them (steps are global)."""
    if name not in PRESETS:
        raise UsageError(f"unknown preset {name!r}", hint=f"use one of {', '.join(PRESETS)}")
    cfg = GuidanceConfig()
    if name == "cpu":
        # SD on a CPU costs ~30 s a step at 512 px (environment-notes.md): half the resolution.
        cfg = replace(cfg, image_size=256)
    return cfg
