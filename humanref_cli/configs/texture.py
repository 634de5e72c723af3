"""Configs of the ``texture`` and ``export`` stages (design.md §4).

The released HumanRef code has no texture stage (method.md §5.3/§5.4: threestudio's exporter bakes
through xatlas at 1024²). Ours extracts a mesh at 512³, cleans and decimates it, unwraps it, bakes
the colour field into the atlas and then optionally refines the texture through a rasteriser with the
reference RGB loss on the front view and Ref-SDS on other views (when Stable Diffusion is present).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from humanref_cli.configs.base import PRESETS
from humanref_cli.configs.guidance import GuidanceConfig
from humanref_cli.configs.guidance import preset as guidance_preset
from humanref_cli.errors import UsageError

EXPORT_FORMATS = ("glb", "obj", "ply")


def _help(text: str, semantic: bool = True) -> dict:
    return {"help": text} if semantic else {"help": text, "semantic": False}


def _texture_guidance(name: str) -> GuidanceConfig:
    """The coarse/refine guidance with its schedule moved to the texture stage's own steps: Ref-SDS from
    step 0, no CLIP phase, no multi-step denoise (geometry and colours are already converged)."""
    return replace(guidance_preset(name), start_step=0, clip_end_step=0, multi_start_step=10**9)


@dataclass(frozen=True)
class TextureConfig:
    mc_res: int = field(default=512, metadata=_help("Marching-cubes grid resolution over the scene box."))
    mc_at_silhouette: bool = field(
        default=False,
        metadata=_help(
            "Extract the mesh at the level where renders draw the silhouette (render/silhouette_level.py),"
            " not at the zero level set (released)."
        ),
    )
    mc_chunk: int = field(default=262144, metadata=_help("SDF queries per chunk during extraction.", False))
    min_component_ratio: float = field(
        default=0.05,
        metadata=_help("Drop components with fewer faces than this times the largest (1.0: largest only)."),
    )
    max_hole_edges: int = field(default=64, metadata=_help("Close holes bounded by at most this many edges."))
    target_faces: int = field(
        default=30000,
        metadata=_help(
            "Decimate to this many faces before UV unwrapping (xatlas: ~3 s at 15k, ~11 s at 30k)."
        ),
    )
    max_unwrap_faces: int = field(
        default=60000, metadata=_help("Refuse to unwrap more faces than this (it would take minutes).")
    )
    texture_size: int = field(default=2048, metadata=_help("Albedo texture size in pixels (square)."))
    padding: int = field(default=8, metadata=_help("Seam padding: texel rings grown around every UV chart."))
    bake_chunk: int = field(
        default=65536, metadata=_help("Colour-field queries per chunk when baking.", False)
    )
    refine_steps: int = field(
        default=1000, metadata=_help("Texture refinement steps after baking (0 keeps the baked texture).")
    )
    refine_res: int = field(default=512, metadata=_help("Render resolution of the texture refinement."))
    pyramid_levels: int = field(
        default=4,
        metadata=_help(
            "Residual pyramid levels of the refined texture (finest: the render resolution, as a power of 2)."
        ),
    )
    lr: float = field(default=0.01, metadata=_help("Adam learning rate of the texels (colours in [0, 1])."))
    lambda_rgb: float = field(
        default=10000.0, metadata=_help("Reference-view RGB MSE weight (as coarse/refine's lambda_rgb).")
    )
    ref_every: int = field(
        default=2, metadata=_help("Without guidance every step is the front view; with it, every r-th step.")
    )
    elevation_min: float = field(default=-20.0, metadata=_help("Random views: lowest elevation (degrees)."))
    elevation_max: float = field(default=20.0, metadata=_help("Random views: highest elevation (degrees)."))
    ckpt_every: int = field(default=250, metadata=_help("Write ckpt/last.pt every this many steps.", False))
    preview_every: int = field(default=250, metadata=_help("Write preview/step_XXXXX.png this often.", False))
    preview_res: int = field(default=256, metadata=_help("Preview tile size in pixels.", False))
    guidance: GuidanceConfig = field(default_factory=lambda: _texture_guidance("paper"))

    def __post_init__(self):
        if self.texture_size < 16 or self.mc_res < 16:
            raise UsageError("texture.texture_size and texture.mc_res must be at least 16")
        if self.target_faces > self.max_unwrap_faces:
            raise UsageError(
                f"texture.target_faces ({self.target_faces}) exceeds "
                f"max_unwrap_faces ({self.max_unwrap_faces})",
                hint="lower target_faces; xatlas takes minutes on large meshes",
            )


@dataclass(frozen=True)
class ExportConfig:
    formats: tuple[str, ...] = field(default=EXPORT_FORMATS, metadata=_help("Files to write: glb, obj, ply."))
    faces: int | None = field(
        default=None, metadata=_help("Decimate to about this many faces for a lighter file (None keeps all).")
    )
    turntable_frames: int = field(default=72, metadata=_help("Frames of the turntable video (0: none)."))
    turntable_size: int = field(default=512, metadata=_help("Turntable frame size in pixels (even)."))
    turntable_fps: int = field(default=24, metadata=_help("Turntable frames per second."))
    sheet_size: int = field(default=512, metadata=_help("Contact-sheet tile size in pixels."))

    def __post_init__(self):
        bad = [f for f in self.formats if f not in EXPORT_FORMATS]
        if bad or not self.formats:
            raise UsageError(
                f"unknown export format(s) {', '.join(bad) or '(none)'}", hint="use any of glb, obj, ply"
            )
        if self.faces is not None and self.faces < 100:
            raise UsageError(f"--faces {self.faces} is too few for a human mesh", hint="use at least 100")
        if self.turntable_size % 2:
            raise UsageError("export.turntable_size must be even (H.264 needs even frame sizes)")


def _check(name: str) -> None:
    if name not in PRESETS:
        raise UsageError(f"unknown preset {name!r}", hint=f"use one of {', '.join(PRESETS)}")


def texture_preset(name: str) -> TextureConfig:
    """``paper``: 512³ mesh, 30k faces, 2048² texture, 1000 refinement steps at 512 px.
    ``fast``: 256³, 20k faces, 1024², 300 steps. ``cpu``: 256³ (the body prior's grid, decision 23;
    a 512³ SDF takes ~15 min on a CPU), 15k faces, 1024², 100 steps at 256 px."""
    _check(name)
    cfg = TextureConfig(guidance=_texture_guidance(name))
    if name == "fast":
        cfg = replace(cfg, mc_res=256, target_faces=20000, texture_size=1024, refine_steps=300)
    elif name == "cpu":
        cfg = replace(
            cfg,
            mc_res=256,
            mc_at_silhouette=True,
            target_faces=15000,
            texture_size=1024,
            refine_steps=100,
            refine_res=256,
            preview_res=128,
        )
    return cfg


def export_preset(name: str) -> ExportConfig:
    """The same files in every preset; ``cpu`` renders a shorter, smaller turntable."""
    _check(name)
    if name == "cpu":
        return ExportConfig(turntable_frames=36, turntable_size=384, turntable_fps=12, sheet_size=384)
    return ExportConfig()
