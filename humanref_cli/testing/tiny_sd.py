"""Tiny randomly initialised Stable Diffusion (and CLIP) stacks saved in the real on-disk layouts.

Tests and CPU benchmarks build these once and load them through the same code that loads the real
weights (``guidance.loading.load_sd``), so the loading path itself is exercised. Nothing is downloaded.

Sizes (environment-notes.md): UNet ``block_out_channels=(32, 64)`` with cross-attention in every block,
a 2-block AutoencoderKL (VAE scale factor 2), a 2-layer CLIP text model and a byte-level BPE tokenizer
generated here, and a DDIM scheduler config with SD 1.5's scaled-linear betas.
"""

from __future__ import annotations

import json
from pathlib import Path

TINY_SAMPLE_SIZE = 16  # latent side; the VAE factor 2 makes 32 px images
TEXT_DIM = 32


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable unicode table (transformers 5 no longer exports it)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return dict(zip(printable, map(chr, chars), strict=True))


def write_tiny_tokenizer(out_dir: Path, model_max_length: int = 77) -> int:
    """Write a CLIP tokenizer (vocab.json, merges.txt, configs) to ``out_dir``; return its vocab size.

    The vocab holds the 256 byte characters, their end-of-word forms, a few merges that make common
    prompt words single tokens, and the start/end tokens (which CLIP's text model pools on).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    chars = list(bytes_to_unicode().values())
    vocab_list = chars + [c + "</w>" for c in chars]
    merges = []
    for word in ("photo", "person", "view", "back", "front", "side", "face", "quality"):
        current = word[0]
        for i, ch in enumerate(word[1:], start=1):
            last = i == len(word) - 1
            right = ch + "</w>" if last else ch
            merges.append(f"{current} {right}")
            current = current + right
            if current not in vocab_list:
                vocab_list.append(current)
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(vocab_list))}
    (out_dir / "vocab.json").write_text(json.dumps(vocab))
    (out_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(dict.fromkeys(merges)) + "\n")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": model_max_length,
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "do_lower_case": True,
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config))
    special = {k: config[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token")}
    (out_dir / "special_tokens_map.json").write_text(json.dumps(special))
    from transformers import CLIPTokenizer

    # tokenizer.json too: the layout of the real repositories (and of models.lock's clip entry)
    CLIPTokenizer.from_pretrained(out_dir, local_files_only=True).backend_tokenizer.save(
        str(out_dir / "tokenizer.json")
    )
    return len(vocab)


SD_DDIM = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
}
"""Stable Diffusion 1.5's noise schedule (its scheduler_config.json)."""


def tiny_vae(block_out_channels: tuple[int, int], sample_size: int):
    """A 2-block ``AutoencoderKL`` (scale factor 2, 4 latent channels), randomly initialised."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=block_out_channels,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=8,
        sample_size=sample_size,
    )


def tiny_text_encoder(tokenizer_dir: Path):
    """A tiny CLIP text model and its tokenizer written to ``tokenizer_dir``."""
    from transformers import CLIPTextModel

    return CLIPTextModel(tiny_text_config(write_tiny_tokenizer(tokenizer_dir)))


def tiny_text_config(vocab_size: int):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=TEXT_DIM,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        max_position_embeddings=77,
        projection_dim=TEXT_DIM,
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1,
    )


def build_tiny_sd(out_dir: str | Path, seed: int = 0, variant: str | None = "fp16") -> Path:
    """Save a tiny random SD stack in the diffusers folder layout under ``out_dir``; return the folder.

    With ``variant="fp16"`` the weights are stored as half-precision ``*.fp16.safetensors`` files,
    the layout models.lock pins for ``sd15`` (so ``models.store.find_model`` finds the folder).
    """
    import torch
    from diffusers import DDIMScheduler, UNet2DConditionModel

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=TINY_SAMPLE_SIZE,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=TEXT_DIM,
        attention_head_dim=4,
        norm_num_groups=8,
    )
    vae = tiny_vae((32, 64), TINY_SAMPLE_SIZE * 2)
    text_encoder = tiny_text_encoder(out / "tokenizer")
    scheduler = DDIMScheduler(**SD_DDIM)
    if variant == "fp16":
        unet, vae, text_encoder = unet.half(), vae.half(), text_encoder.half()
    unet.save_pretrained(out / "unet", variant=variant)
    vae.save_pretrained(out / "vae", variant=variant)
    text_encoder.save_pretrained(out / "text_encoder", variant=variant)
    scheduler.save_pretrained(out / "scheduler")
    index = {
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": "0.42.1",
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "scheduler": ["diffusers", "DDIMScheduler"],
        "safety_checker": [None, None],
        "feature_extractor": [None, None],
        "requires_safety_checker": False,
    }
    (out / "model_index.json").write_text(json.dumps(index, indent=2))
    return out


def build_tiny_clip(out_dir: str | Path, seed: int = 0, image_size: int = 32) -> Path:
    """Save a tiny random CLIP (vision + text, transformers layout) with its tokenizer; return the folder."""
    import torch
    from transformers import CLIPConfig, CLIPModel, CLIPVisionConfig

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    vocab_size = write_tiny_tokenizer(out)
    vision = CLIPVisionConfig(
        hidden_size=TEXT_DIM,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        image_size=image_size,
        patch_size=8,
        projection_dim=TEXT_DIM,
    )
    config = CLIPConfig(
        text_config=tiny_text_config(vocab_size).to_dict(),
        vision_config=vision.to_dict(),
        projection_dim=TEXT_DIM,
    )
    CLIPModel(config).save_pretrained(out)
    preprocessor = {
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "crop_size": {"height": image_size, "width": image_size},
    }
    (out / "preprocessor_config.json").write_text(json.dumps(preprocessor))
    return out


def write_toy_prep(prep: Path) -> Path:
    """A toy 64 px prep folder for guidance tests: ``mask.png`` (rows 4-59, columns 20-43),
    ``regions.json`` (head/upper/lower/feet/face boxes) and ``prompt.txt``. Returns ``prep``."""
    import numpy as np
    from PIL import Image

    size = 64
    prep.mkdir(parents=True, exist_ok=True)
    mask = np.zeros((size, size), np.uint8)
    mask[4:60, 20:44] = 255
    Image.fromarray(mask).save(prep / "mask.png")
    parts = {
        "head": {"box": [22, 2, 42, 16]},
        "upper": {"box": [16, 14, 48, 34]},
        "lower": {"box": [18, 32, 46, 52]},
        "feet": {"box": [18, 50, 46, 62]},
        "face": {"box": [24, 4, 40, 14]},
    }
    (prep / "regions.json").write_text(json.dumps({"size": [size, size], "parts": parts}))
    (prep / "prompt.txt").write_text("a photo of a person, high quality")
    return prep
