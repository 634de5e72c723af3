"""Guidance step time and peak memory: plain SDS vs Ref-SDS (strategies 3 and 0), and a refine step.

On CUDA it builds UNet/VAE with Stable Diffusion 1.5's exact configurations, randomly initialised in
fp16 (no weights needed for timing), with random prompt embeddings of CLIP-L's shape (77 x 768).
``--tiny`` (the default on CPU) uses the test suite's tiny stack instead.

    python bench/guidance_gpu.py                      # CUDA: 512 px, SD 1.5 sizes
    python bench/guidance_gpu.py --tiny --size 32 --steps 2     # CPU smoke run

Prints a table and writes bench/results/guidance_gpu.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import replace
from pathlib import Path

import torch

SD15_UNET = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=768,
    attention_head_dim=8,
    norm_num_groups=32,
)
SD15_VAE = dict(
    in_channels=3,
    out_channels=3,
    block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    layers_per_block=2,
    latent_channels=4,
    norm_num_groups=32,
    sample_size=512,
    scaling_factor=0.18215,
)


def build_models(device: torch.device, tiny: bool, tmp: Path):
    """SDModels + PromptEmbeddings, random weights (SD 1.5 sizes, or the tiny test stack)."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel, UniPCMultistepScheduler

    from humanref_cli.guidance.loading import SDModels, freeze, load_sd, model_dtype
    from humanref_cli.guidance.prompts import VIEW_SUFFIXES, PromptEmbeddings

    if tiny:
        from humanref_cli.testing.tiny_sd import build_tiny_sd

        sd = load_sd(build_tiny_sd(tmp / "sd15"), device)
        emb = PromptEmbeddings.encode("a photo of a person", sd.tokenizer, sd.text_encoder, device, sd.dtype)
        return sd, emb
    dtype = model_dtype(device)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**SD15_UNET).to(device, dtype)
    vae = AutoencoderKL(**SD15_VAE).to(device, dtype)
    freeze(unet, vae)
    ddim = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1)
    scheduler = UniPCMultistepScheduler.from_config(ddim.config)
    sd = SDModels(unet, vae, None, None, scheduler, device, dtype)
    cond = {v: torch.randn(1, 77, 768, device=device, dtype=dtype) for v in VIEW_SUFFIXES}
    return sd, PromptEmbeddings(cond, torch.randn(1, 77, 768, device=device, dtype=dtype))


def toy_regions(size: int):
    """A standing-body silhouette with part boxes, in a ``size`` crop."""
    from humanref_cli.guidance.regions import Regions

    s = size / 64
    mask = torch.zeros(size, size)
    mask[int(4 * s) : int(60 * s), int(20 * s) : int(44 * s)] = 1
    boxes = {
        "head": (22, 2, 42, 16),
        "upper": (16, 14, 48, 34),
        "lower": (18, 32, 46, 52),
        "feet": (18, 50, 46, 62),
    }
    return Regions(mask, {k: tuple(int(v * s) for v in b) for k, b in boxes.items()})


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_guidance(guidance, size: int, steps: int, warmup: int, device) -> dict:
    """Seconds per forward+backward guidance step (render at ``size``) and peak memory."""
    rgb = torch.rand(1, 3, size, size, device=device, requires_grad=True)
    opacity = guidance.regions.mask if guidance.regions is not None else torch.ones(size, size)
    opacity = opacity.to(device).view(1, 1, size, size)
    ref = torch.rand(1, 3, size, size, device=device)
    for i in range(warmup + steps):
        if i == warmup:
            sync(device)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
        loss = guidance(rgb, opacity, ref, 180.0, 0.0, step=3000)["ref_sds"]
        loss.backward()
        rgb.grad = None
    sync(device)
    seconds = (time.perf_counter() - start) / steps
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    return {"s_per_step": seconds, "peak_gib": peak}


def ellipsoid_prior(resolution: int = 64):
    """A standing-body-sized ellipsoid SDF grid (approximate distance) for a field to start from."""
    from humanref_cli.geometry.body_sdf import BodyPriorSDF

    lin = torch.linspace(-1, 1, resolution)
    x, y, z = torch.meshgrid(lin, lin, lin, indexing="ij")
    radii = torch.tensor([0.2, 0.3, 0.85])
    k = torch.sqrt((x / radii[0]) ** 2 + (y / radii[1]) ** 2 + (z / radii[2]) ** 2)
    return BodyPriorSDF((k - 1) * radii.min())


def refine_step(guidance, size: int, steps: int, warmup: int, device, field_dir: Path | None = None) -> dict:
    """A whole refine-like step: render a back-ish view of a field at ``size`` (volume renderer with
    occupancy grid), Ref-SDS on it, backward, Adam step. Also the render-only step for comparison.

    The field is a trained one from ``field_dir`` (a workspace's ``coarse/`` or ``refine/``: the
    density a refine step meets) or, without it, a fresh field on an ellipsoid at the initial density
    inv_std 20 (far more samples per ray than any refine step renders: a worst case)."""
    try:  # written by other engineers; optional here
        from humanref_cli.geometry.field import FieldConfig, HumanField
        from humanref_cli.render.camera import camera_to_world
        from humanref_cli.render.occupancy import OccupancyGrid
        from humanref_cli.render.volume import render_view
    except ImportError as e:
        return {"skipped": f"renderer/field not importable: {e}"}
    torch.manual_seed(0)
    if field_dir is not None:
        from humanref_cli.geometry.field import load_field

        field = load_field(field_dir, device)
    else:
        field = HumanField(FieldConfig(), ellipsoid_prior()).to(device)
    occ = OccupancyGrid().to(device)
    occ.build(field)
    opt = torch.optim.Adam(field.parameters(), lr=1e-3)
    ref = torch.rand(1, 3, size, size, device=device)
    c2w = camera_to_world(160.0, 10.0)
    result = {}
    for label, with_guidance in (("render_only", False), ("render_refsds", True)):
        for i in range(warmup + steps):
            if i == warmup:
                sync(device)
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                start = time.perf_counter()
            bg = torch.rand(3, device=device)
            out = render_view(field, c2w, size, size, bg, occ=occ)
            rgb, opacity = out["rgb"].permute(2, 0, 1)[None], out["opacity"].permute(2, 0, 1)[None]
            loss = ((rgb - ref) ** 2).mean()
            if with_guidance:
                loss = loss + 1e-3 * guidance(rgb, opacity, ref, 160.0, 10.0, step=3000, bg=bg)["ref_sds"]
            opt.zero_grad()
            loss.backward()
            opt.step()
        sync(device)
        result[f"{label}_s_per_step"] = (time.perf_counter() - start) / steps
        if device.type == "cuda":
            result[f"{label}_peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--size", type=int, default=None, help="render and diffusion size (default: model's)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--tiny", action="store_true", help="tiny test stack (default on CPU)")
    parser.add_argument("--skip-refine", action="store_true", help="skip the whole refine-step timing")
    parser.add_argument("--field", type=Path, default=None, help="trained field folder for the refine step")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "guidance_gpu.json")
    args = parser.parse_args(argv)

    import tempfile

    from humanref_cli.configs.guidance import GuidanceConfig
    from humanref_cli.guidance.refsds import DiffusionGuidance

    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    tiny = args.tiny or device.type == "cpu"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        sd, emb = build_models(device, tiny, Path(tmp))
        size = args.size or sd.image_size
        regions = toy_regions(size)
        variants = [
            ("sds", dict(mode="sds")),
            ("refsds s3", dict(strategy=3)),
            ("refsds s0", dict(strategy=0)),
        ]
        for label, kw in variants:
            from diffusers.models.attention_processor import AttnProcessor2_0

            sd.unet.set_attn_processor(AttnProcessor2_0())  # each variant starts from diffusers' default
            cfg = replace(GuidanceConfig(image_size=size), **kw)
            guidance = DiffusionGuidance(sd, emb, cfg, regions)
            rows.append({"guidance": label, **time_guidance(guidance, size, args.steps, args.warmup, device)})
        refine = {"skipped": "--skip-refine"}
        if not args.skip_refine:
            refine = refine_step(guidance, size, args.steps, args.warmup, device, args.field)
            refine["field"] = str(args.field) if args.field else "ellipsoid, initial density"
    result = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu",
        "models": "tiny test stack" if tiny else "SD 1.5 configs, random init",
        "dtype": str(sd.dtype),
        "size": size,
        "steps": args.steps,
        "torch": torch.__version__,
        "rows": rows,
        "refine_step": refine,
    }
    print(
        f"{'guidance':<12} {'s/step':>9} {'peak GiB':>9}  ({result['device']}, {result['models']}, {size} px)"
    )
    for r in rows:
        peak = f"{r['peak_gib']:.2f}" if r["peak_gib"] is not None else "-"
        print(f"{r['guidance']:<12} {r['s_per_step']:>9.4f} {peak:>9}")
    print(
        "refine step:",
        ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in refine.items()),
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
