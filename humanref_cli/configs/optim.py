"""Configs of the two optimisation stages, ``coarse`` and ``refine`` (method.md §3-§5, design.md §4).

The released code is one 12,000-step run; coarse runs its global steps 0-3000 and refine 3000-12000.
Steps are *global* everywhere (view cadence, normal-weight boosts, guidance phases), so a stage's
schedule reads the same as the paper's. ``fast`` keeps the structure with a quarter of the steps;
``cpu`` is a few hundred steps at low resolution with guidance off unless a model is present.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from humanref_cli.configs.base import PRESETS
from humanref_cli.configs.field import FieldConfig
from humanref_cli.configs.guidance import GuidanceConfig
from humanref_cli.configs.guidance import preset as guidance_preset
from humanref_cli.errors import UsageError

NOT_SEMANTIC = {"semantic": False}


def _help(text: str, semantic: bool = True) -> dict:
    return {"help": text} if semantic else {"help": text, "semantic": False}


@dataclass(frozen=True)
class LossConfig:
    """Weights of the loss terms 1-7 of method.md §5.2 and the no-guidance fallback (design.md §4)."""

    lambda_rgb: float = field(default=10000.0, metadata=_help("Term 1: reference-view RGB MSE (lambda_img)."))
    lambda_normal: float = field(default=10.0, metadata=_help("Term 2: front/back normal MSE, times w_n."))
    normal_boost_step: int = field(default=3000, metadata=_help("w_n becomes normal_boost from this step."))
    normal_boost: float = field(
        default=10.0, metadata=_help("Normal-weight multiplier w_n after the 1st boost.")
    )
    normal_boost2_step: int = field(default=7200, metadata=_help("w_n becomes normal_boost2 from this step."))
    normal_boost2: float = field(
        default=100.0, metadata=_help("Normal-weight multiplier w_n after the 2nd boost.")
    )
    boost_body_normals: bool = field(
        default=False,
        metadata=_help(
            "Apply the w_n boosts even when prep's normal maps are the fitted body's own (no normal"
            " estimator): boosting them only imprints ripples (docs/decisions.md 24)."
        ),
    )
    lambda_iou: float = field(default=1.0, metadata=_help("Term 3: soft negative IoU of the silhouette."))
    lambda_sdf: float = field(default=100.0, metadata=_help("Term 4: SDF prior, mean (s - s_body)^2."))
    lambda_sdf_smooth: float = field(default=1.0, metadata=_help("Term 5: mean |s(x) - s(x + xi)|."))
    lambda_normal_smooth_2d: float = field(
        default=5.0, metadata=_help("Term 6: squared forward differences of the normal map.")
    )
    lambda_normal_smooth_3d: float = field(default=2.0, metadata=_help("Term 7: mean |n(x) - n(x + xi)|."))
    perturb_std: float = field(default=0.01, metadata=_help("Std of xi for terms 5 and 7 (world units)."))
    lambda_back_rgb: float = field(
        default=1000.0,
        metadata=_help(
            "Fallback without diffusion guidance only: MSE of the back view against the horizontally "
            "mirrored reference colours (design.md §4; the face covered, `cover_back_face`). Not part of the "
            "method; 0 turns it off."
        ),
    )
    cover_back_face: bool = field(
        default=True,
        metadata=_help(
            "Fallback only: in the back view's mirrored colours, cover the face with the colour of the top "
            "of the head (the mirrored face would be painted onto the back of the head; decision 9b)."
        ),
    )

    def normal_multiplier(self, step: int) -> float:
        """w_n: 1, then ``normal_boost`` and ``normal_boost2`` from their steps."""
        if step >= self.normal_boost2_step:
            return self.normal_boost2
        if step >= self.normal_boost_step:
            return self.normal_boost
        return 1.0


@dataclass(frozen=True)
class ViewConfig:
    """The per-step view choice of method.md §5.1."""

    ref_every: int = field(
        default=10, metadata=_help("r: step % r == 0 is the front view, == 1 the back view.")
    )
    ref_every_late: int = field(default=20, metadata=_help("r from ref_every_switch_step on."))
    ref_every_switch_step: int = field(
        default=2000, metadata=_help("Step at which r becomes ref_every_late.")
    )
    elevation_min: float = field(default=-20.0, metadata=_help("Random views: lowest elevation (degrees)."))
    elevation_max: float = field(default=20.0, metadata=_help("Random views: highest elevation (degrees)."))
    distance_min: float = field(default=0.8, metadata=_help("Random views: nearest camera distance."))
    distance_max: float = field(default=1.2, metadata=_help("Random views: farthest camera distance."))
    jitter_std: float = field(
        default=0.002, metadata=_help("Front/back views: std of the ray-origin and -direction jitter.")
    )
    random_background: bool = field(
        default=True, metadata=_help("Draw a uniform RGB background each step (else white).")
    )


@dataclass(frozen=True)
class OptimConfig:
    """Adam (method.md §5.1), occupancy-grid cadence, checkpoints and previews."""

    lr: float = field(default=1e-3, metadata=_help("Adam learning rate of every parameter group."))
    lr_color: float | None = field(
        default=None, metadata=_help("Learning rate of the colour MLP (None: ``lr``, as the paper).")
    )
    lr_theta: float | None = field(
        default=None,
        metadata=_help("Learning rate of the density's theta (None: ``lr``, as the paper; 0 freezes it)."),
    )
    beta1: float = field(default=0.9, metadata=_help("Adam beta1."))
    beta2: float = field(default=0.99, metadata=_help("Adam beta2."))
    eps: float = field(default=1e-15, metadata=_help("Adam eps."))
    samples_per_ray: int = field(
        default=512,
        metadata=_help(
            "Ray-marching step = box diagonal / samples_per_ray (512: dt = 0.00677, the paper's)."
        ),
    )
    occ_every: int = field(
        default=16, metadata=_help("Refresh the 32^3 occupancy grid every this many steps.")
    )
    occ_threshold: float = field(
        default=0.01,
        metadata=_help("A cell is occupied when its opacity EMA exceeds min(mean, this) (nerfacc: 0.01)."),
    )
    ckpt_every: int = field(default=250, metadata=_help("Write ckpt/last.pt every this many steps.", False))
    ckpt_minutes: float = field(
        default=5.0, metadata=_help("... and at least every this many minutes.", False)
    )
    preview_every: int = field(
        default=500, metadata=_help("Write preview/step_XXXXX.png every this many steps.", False)
    )
    preview_res: int = field(default=128, metadata=_help("Preview tile size in pixels.", False))
    chunk: int = field(default=65536, metadata=_help("Rays per rendering chunk at preview/eval time.", False))

    @property
    def step_size(self) -> float:
        """Ray-marching step ``dt`` (world units)."""
        return 1.732 * 2 / self.samples_per_ray


@dataclass(frozen=True)
class CoarseConfig:
    """Stage ``coarse``: field initialised at the body prior, global steps ``0 .. steps``."""

    steps: int = field(default=3000, metadata=_help("Optimisation steps (global steps 0 .. steps)."))
    init_steps: int = field(
        default=1000, metadata=_help("Adam steps fitting the field to the body SDF first.")
    )
    init_points: int = field(default=20000, metadata=_help("Uniform points per initialisation step."))
    res_start: int = field(default=64, metadata=_help("Render resolution at step 0."))
    res_max: int = field(
        default=256, metadata=_help("Render resolution cap (doubling every res_double_every).")
    )
    res_double_every: int = field(default=1000, metadata=_help("Steps between resolution doublings."))
    loss_res: int = field(
        default=512, metadata=_help("Rendered maps are bilinearly resized to this for losses.")
    )
    mesh_res: int = field(default=256, metadata=_help("Marching-cubes grid resolution of mesh.ply."))
    mesh_at_silhouette: bool = field(
        default=False,
        metadata=_help(
            "Take mesh.ply at the level where renders draw the silhouette (render/silhouette_level.py),"
            " not at the zero level set (released)."
        ),
    )
    prior_res: int = field(
        default=256,
        metadata=_help(
            "Grid resolution of the precomputed body-prior SDF (mesh best at the same, decision 23)."
        ),
    )
    geometry: FieldConfig = field(default_factory=FieldConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    views: ViewConfig = field(default_factory=ViewConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    guidance: GuidanceConfig = field(default_factory=GuidanceConfig)

    @property
    def start_step(self) -> int:
        return 0

    @property
    def end_step(self) -> int:
        return self.steps

    def render_res(self, step: int) -> int:
        """The resolution ladder: ``min(res_start * 2^(step // res_double_every), res_max)``."""
        return min(self.res_start * 2 ** (step // self.res_double_every), self.res_max)


@dataclass(frozen=True)
class RefineConfig:
    """Stage ``refine``: continues the coarse field over global steps ``start_step .. start_step + steps``."""

    start_step: int = field(default=3000, metadata=_help("First global step (the coarse stage's last)."))
    steps: int = field(default=9000, metadata=_help("Optimisation steps of this stage."))
    res: int = field(default=512, metadata=_help("Render resolution."))
    loss_res: int = field(
        default=512, metadata=_help("Rendered maps are bilinearly resized to this for losses.")
    )
    mesh_res: int = field(default=256, metadata=_help("Marching-cubes grid resolution of mesh.ply."))
    mesh_at_silhouette: bool = field(
        default=False,
        metadata=_help(
            "Take mesh.ply at the level where renders draw the silhouette (render/silhouette_level.py),"
            " not at the zero level set (released)."
        ),
    )
    loss: LossConfig = field(default_factory=LossConfig)
    views: ViewConfig = field(default_factory=ViewConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    guidance: GuidanceConfig = field(default_factory=GuidanceConfig)

    @property
    def end_step(self) -> int:
        return self.start_step + self.steps

    def render_res(self, step: int) -> int:
        return self.res


def _check(name: str) -> None:
    if name not in PRESETS:
        raise UsageError(f"unknown preset {name!r}", hint=f"use one of {', '.join(PRESETS)}")


def _scaled_schedule(loss: LossConfig, views: ViewConfig, guidance: GuidanceConfig, f: float):
    """The paper's global-step schedule scaled by ``f`` (used by the shorter presets)."""
    s = lambda step: int(round(step * f))  # noqa: E731
    loss = replace(
        loss, normal_boost_step=s(loss.normal_boost_step), normal_boost2_step=s(loss.normal_boost2_step)
    )
    views = replace(views, ref_every_switch_step=s(views.ref_every_switch_step))
    guidance = replace(
        guidance,
        start_step=s(guidance.start_step),
        clip_end_step=s(guidance.clip_end_step),
        multi_start_step=s(guidance.multi_start_step),
    )
    return loss, views, guidance


FAST_FACTOR = 0.25
CPU_FACTOR = 0.025
"""Fraction of the paper's 12,000 global steps run by the fast and cpu presets (schedules scale with it)."""

# The cpu preset trades the paper's resolution and step count for minutes on two cores (measured in
# bench/synthetic.py); every deviation from the paper and why (docs/decisions.md):
# - 300 global steps (2.5%), coarse at 64 px and refine at 192 px, losses at the render resolution:
#   the bilinear resize to 512 (align_corners=True, as released) would rescale a 64 px render by 63/64,
#   1.4 cm at the head and feet, and the loss terms are built for low-resolution targets (train/loop.py).
#   Refine at 192 px instead of 128: front PSNR +2.7 to +3.8 dB, Chamfer -0.016 to +0.004 cm, twice the
#   refine time (docs/decisions.md 27).
# - the paper's ray step (512 samples per ray, dt = 0.68 cm): a coarser step cannot resolve the sharp
#   density below, and the step, not the sample count, sets the cost (pruning keeps a thin band).
# - inv_std starts at exp(10 * 0.65) ~ 665 (beta 1.5 mm) instead of ~20 (beta 5 cm): the paper's 12,000
#   steps let theta grow, 300 cannot, and a soft density renders a silhouette dilated by ~beta, which the
#   silhouette and normal terms then pay for by shrinking the surface (1-3 cm measured). theta is
#   frozen there (lr_theta 0): learnt over 300 steps it only drifted softer (0.65 -> 0.58), trading
#   silhouette coverage for a surface 0.7 cm inside the ground truth instead of 0.45 cm.
# - occupancy threshold 1e-5 instead of 0.01: with that sharp density a 32^3 cell evaluated at one random
#   point reads ~0 unless the point is within ~1 cm of the surface, and thin limbs were pruned away.
# - the colour MLP at lr 1e-2: at 1e-3 the colour stays grey (~24 dB) for the ~100 reference views the
#   run sees, and the 10^4-weighted RGB term then reshapes the geometry to fit the wrong colour.
CPU_OPTIM = {
    "samples_per_ray": 512,
    "occ_threshold": 1e-5,
    "lr_color": 1e-2,
    "lr_theta": 0.0,
    "preview_every": 75,
    "preview_res": 96,
    "ckpt_every": 50,
}
CPU_INV_STD_THETA = 0.65


def _cpu_views(views: ViewConfig) -> ViewConfig:
    # Without guidance only the front and back views carry data terms: see them every third step.
    return replace(views, ref_every=3, ref_every_late=3)


def _scaled_fields(cfg: CoarseConfig | RefineConfig, f: float) -> dict:
    """Fields both stages' fast and cpu presets replace: schedule and preview cadence scaled by ``f``."""
    loss, views, guidance = _scaled_schedule(cfg.loss, cfg.views, cfg.guidance, f)
    optim = replace(cfg.optim, preview_every=int(500 * f))
    return {"loss": loss, "views": views, "guidance": guidance, "optim": optim}


def _cpu_fields(cfg: CoarseConfig | RefineConfig) -> dict:
    """Fields both stages' cpu presets replace (the deviations listed above ``CPU_OPTIM``)."""
    return {
        "mesh_at_silhouette": True,
        "views": _cpu_views(cfg.views),
        "optim": replace(cfg.optim, **CPU_OPTIM),
    }


def coarse_preset(name: str) -> CoarseConfig:
    """``paper``: steps 0-3000, 64 -> 256 px. ``fast``: a quarter of it. ``cpu``: 75 steps at 64 px."""
    _check(name)
    cfg = CoarseConfig(guidance=guidance_preset(name))
    if name == "paper":
        return cfg
    f = CPU_FACTOR if name == "cpu" else FAST_FACTOR
    cfg = replace(
        cfg,
        steps=int(3000 * f),
        res_double_every=int(1000 * f),
        init_steps=int(cfg.init_steps * f * 2) if name == "cpu" else int(cfg.init_steps * f),
        **_scaled_fields(cfg, f),
    )
    if name == "cpu":
        cfg = replace(
            cfg,
            res_start=64,
            res_max=64,
            loss_res=64,
            geometry=replace(cfg.geometry, inv_std_init_theta=CPU_INV_STD_THETA),
            **_cpu_fields(cfg),
        )
    return cfg


def refine_preset(name: str) -> RefineConfig:
    """``paper``: steps 3000-12000 at 512 px. ``fast``: a quarter of it. ``cpu``: 225 steps at 192 px."""
    _check(name)
    cfg = RefineConfig(guidance=guidance_preset(name))
    if name == "paper":
        return cfg
    f = CPU_FACTOR if name == "cpu" else FAST_FACTOR
    cfg = replace(cfg, start_step=int(3000 * f), steps=int(9000 * f), **_scaled_fields(cfg, f))
    if name == "cpu":
        cfg = replace(cfg, res=192, loss_res=192, **_cpu_fields(cfg))
    return cfg
