"""Build the guidance of a stage from its config, the prep folder and the local models."""

from __future__ import annotations

from pathlib import Path

from humanref_cli.configs.guidance import GuidanceConfig
from humanref_cli.errors import MissingModel

DEFAULT_PROMPT = "a photo of a person"


def read_prompt(prep_dir: Path) -> str:
    """The subject prompt prep wrote (already cleaned), else the default."""
    path = Path(prep_dir) / "prompt.txt"
    text = path.read_text().strip() if path.is_file() else ""
    return text or DEFAULT_PROMPT


def no_sd_warning(stage: str) -> str:
    """What a stage says when its guidance is on but Stable Diffusion 1.5 is not installed."""
    from humanref_cli.models.store import pull_hint

    fix = pull_hint("sd15")
    return f"{stage}: Stable Diffusion 1.5 is not installed, so Ref-SDS is off; to turn it on: {fix}"


def build_guidance(cfg: GuidanceConfig, prep_dir: str | Path, device, models_dir: Path | None):
    """A :class:`~humanref_cli.guidance.refsds.DiffusionGuidance`, or None when guidance is off.

    Off when ``cfg.mode == "none"`` or SD 1.5 is not installed; in the latter case
    ``cfg.require_guidance`` raises :class:`MissingModel` (exit 5) naming the pull command instead.
    CLIP losses and the multi-step-denoise LPIPS term are added when their models are installed.
    The caller records ``guidance.name`` and ``guidance.models`` in the manifest (or "none").
    """
    import torch

    from humanref_cli.models.store import find_model, model_id, pull_hint

    if cfg.mode == "none":
        return None
    sd_path = find_model("sd15", models_dir)
    if sd_path is None:
        if cfg.require_guidance:
            raise MissingModel("Stable Diffusion 1.5 (role sd15) is not installed", hint=pull_hint("sd15"))
        return None
    from humanref_cli.guidance.loading import load_sd
    from humanref_cli.guidance.prompts import PromptEmbeddings
    from humanref_cli.guidance.refsds import DiffusionGuidance
    from humanref_cli.guidance.regions import load_regions

    device = torch.device(device)
    prep_dir = Path(prep_dir)
    sd = load_sd(sd_path, device, cfg.half_precision)
    prompt = read_prompt(prep_dir)
    embeddings = PromptEmbeddings.encode(prompt, sd.tokenizer, sd.text_encoder, device, sd.dtype)
    sd.text_encoder = None  # every view class is encoded: free ~250 MB of VRAM
    regions = load_regions(prep_dir)
    models = {"sd15": model_id("sd15")}
    clip = lpips = None
    clip_path = find_model("clip", models_dir)
    if clip_path is not None:
        from humanref_cli.guidance.clip_loss import ClipLosses

        clip = ClipLosses.load(clip_path, prompt, regions, device)
        models["clip"] = model_id("clip")
    lpips_path = find_model("lpips", models_dir)
    if lpips_path is not None:
        from humanref_cli.guidance.lpips_vgg import load_lpips

        lpips = load_lpips(lpips_path, device)
        models["lpips"] = model_id("lpips")
    return DiffusionGuidance(sd, embeddings, cfg, regions, models, clip=clip, lpips=lpips)
