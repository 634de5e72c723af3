"""Load the frozen Stable Diffusion 1.5 parts from a local diffusers folder (method.md §6.1).

Everything is read with ``local_files_only=True``; sizes (VAE scale factor, latent size, image size,
latent scaling) come from the model configs, never from constants. fp16 on CUDA, fp32 on CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from humanref_cli.errors import MissingModel


@dataclass
class SDModels:
    """The frozen parts of an SD pipeline that guidance needs, on one device in one dtype.

    ``text_encoder``/``tokenizer`` may be None when prompt embeddings are supplied another way
    (benchmarks). ``alphas_cumprod`` is ``(T,)`` float32 on ``device``.
    """

    unet: Any
    vae: Any
    text_encoder: Any | None
    tokenizer: Any | None
    scheduler: Any
    device: torch.device
    dtype: torch.dtype
    path: Path | None = None

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_size(self) -> int:
        return int(self.unet.config.sample_size)

    @property
    def image_size(self) -> int:
        return self.latent_size * self.vae_scale_factor

    @property
    def latent_scale(self) -> float:
        return float(self.vae.config.scaling_factor)

    @property
    def num_train_timesteps(self) -> int:
        return int(self.scheduler.config.num_train_timesteps)

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        return self.scheduler.alphas_cumprod.to(self.device, torch.float32)


def model_dtype(device: torch.device, half_precision: bool = True) -> torch.dtype:
    """fp16 on CUDA when asked (the released code runs SD in fp16), fp32 everywhere else."""
    return torch.float16 if (half_precision and torch.device(device).type == "cuda") else torch.float32


def freeze(*modules) -> None:
    for m in modules:
        if m is not None:
            m.requires_grad_(False)
            m.eval()


def load_sd(path: str | Path, device: torch.device | str, half_precision: bool = True) -> SDModels:
    """Load UNet, VAE, CLIP text encoder, tokenizer and a UniPC scheduler from a diffusers folder.

    The scheduler is UniPC built from the folder's scheduler config (method.md §6.1): its betas define
    q(z_t | z_0); its stepping is used only by the multi-step denoise.
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel, UniPCMultistepScheduler
    from transformers import CLIPTextModel, CLIPTokenizer

    path = Path(path)
    if not (path / "model_index.json").is_file():
        raise MissingModel(
            f"{path} is not a diffusers Stable Diffusion folder (no model_index.json)",
            hint="humanref models pull sd15",
        )
    device = torch.device(device)
    dtype = model_dtype(device, half_precision)
    # models.lock pins only SD 1.5's fp16 files; a full-precision folder has no variant suffix
    variant = "fp16" if (path / "unet" / "diffusion_pytorch_model.fp16.safetensors").is_file() else None
    kw = dict(local_files_only=True, dtype=dtype, variant=variant)  # `torch_dtype` is deprecated
    unet = UNet2DConditionModel.from_pretrained(path, subfolder="unet", low_cpu_mem_usage=False, **kw)
    vae = AutoencoderKL.from_pretrained(path, subfolder="vae", low_cpu_mem_usage=False, **kw)
    text_encoder = CLIPTextModel.from_pretrained(path / "text_encoder", **kw)
    unet, vae, text_encoder = unet.to(device), vae.to(device), text_encoder.to(device)
    tokenizer = CLIPTokenizer.from_pretrained(path / "tokenizer", local_files_only=True)
    scheduler = UniPCMultistepScheduler.from_pretrained(path, subfolder="scheduler", local_files_only=True)
    freeze(unet, vae, text_encoder)
    return SDModels(unet, vae, text_encoder, tokenizer, scheduler, device, dtype, path)
