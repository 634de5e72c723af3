"""Tiny randomly initialised Marigold normals and BLIP captioning models in the real repos' layouts.

``make_tiny_marigold`` mirrors ``prs-eth/marigold-normals-v1-1`` (a diffusers
``MarigoldNormalsPipeline`` folder with fp16 weights) and ``make_tiny_blip`` mirrors
``Salesforce/blip-image-captioning-base`` (a transformers ``BlipForConditionalGeneration`` with its
BERT tokenizer and ``BlipImageProcessor`` files). Both are written with the files models.lock lists,
so ``models.store.find_model`` finds them, and are loaded by the same code that loads the real
weights (``perception.normals.marigold_front_normals``, ``perception.prompt.blip_caption``). Their
outputs are random: tests check the plumbing, not quality. Nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

from humanref_cli.testing.tiny_sd import SD_DDIM, TEXT_DIM, tiny_text_encoder, tiny_vae

MARIGOLD_RES = 32  # default_processing_resolution; the VAE factor 2 gives 16 x 16 latents
BLIP_IMAGE_SIZE = 32
BLIP_DIM = 32
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
# A small lower-case word list for the BERT vocabulary; BLIP adds [DEC] (its bos) and [ENC] after it.
BLIP_WORDS = (
    "a an the of in on with and man woman person people standing photo picture wearing shirt "
    "jacket dress pants jeans shoes hair blue red white black green background front"
).split()


def make_tiny_marigold(role_dir: Path, seed: int = 0) -> Path:
    """Save a tiny ``MarigoldNormalsPipeline`` in the ``prs-eth/marigold-normals-v1-1`` layout
    (``model_index.json``, ``unet``, ``vae``, ``scheduler``, ``text_encoder``, ``tokenizer``; fp16
    weights as ``*.fp16.safetensors``) under ``role_dir``; return ``role_dir``.

    The UNet takes 8 channels (the image latent concatenated with the noisy normals latent) and
    predicts 4, as Marigold's does; the VAE has 2 blocks (scale factor 2).
    """
    import torch
    from diffusers import DDIMScheduler, UNet2DConditionModel

    out = Path(role_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=MARIGOLD_RES // 2,
        in_channels=8,
        out_channels=4,
        block_out_channels=(16, 32),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=TEXT_DIM,
        attention_head_dim=4,
        norm_num_groups=8,
        use_linear_projection=True,  # as SD 2, Marigold's base
    )
    vae = tiny_vae((16, 32), MARIGOLD_RES)
    text_encoder = tiny_text_encoder(out / "tokenizer")
    # v1-1's scheduler: DDIM with trailing timesteps and v-prediction on a zero-terminal-SNR schedule
    scheduler = DDIMScheduler(
        **SD_DDIM,
        prediction_type="v_prediction",
        rescale_betas_zero_snr=True,
        timestep_spacing="trailing",
    )
    for name, module in (("unet", unet), ("vae", vae), ("text_encoder", text_encoder)):
        module.half().save_pretrained(out / name, variant="fp16")
    scheduler.save_pretrained(out / "scheduler")
    index = {
        "_class_name": "MarigoldNormalsPipeline",
        "_diffusers_version": "0.42.1",
        "default_denoising_steps": 4,
        "default_processing_resolution": MARIGOLD_RES,
        "prediction_type": "normals",
        "use_full_z_range": True,
        "scheduler": ["diffusers", "DDIMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    (out / "model_index.json").write_text(json.dumps(index, indent=2))
    return out


def write_blip_tokenizer(out_dir: Path) -> dict[str, int]:
    """Write BLIP's BERT tokenizer files (``vocab.txt``, ``tokenizer.json``, ``tokenizer_config.json``,
    ``special_tokens_map.json``) as the real repo has them; return the special token ids
    (``pad``, ``sep``, ``bos`` = [DEC], ``vocab_size``)."""
    from transformers import BertTokenizer

    out_dir.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *BLIP_WORDS]
    (out_dir / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizer(str(out_dir / "vocab.txt"), do_lower_case=True)
    tokenizer.add_special_tokens({"bos_token": "[DEC]", "additional_special_tokens": ["[ENC]"]})
    tokenizer.backend_tokenizer.save(str(out_dir / "tokenizer.json"))
    special = {
        "bos_token": "[DEC]",
        "cls_token": "[CLS]",
        "mask_token": "[MASK]",
        "pad_token": "[PAD]",
        "sep_token": "[SEP]",
        "unk_token": "[UNK]",
        "additional_special_tokens": ["[ENC]"],
    }
    (out_dir / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    # as in the real repo, [DEC] is named only in special_tokens_map.json and tokenizer.json
    config = {
        **{k: v for k, v in special.items() if k not in ("bos_token", "additional_special_tokens")},
        "do_lower_case": True,
        "model_max_length": 512,
        "processor_class": "BlipProcessor",
        "tokenizer_class": "BertTokenizer",
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    ids = tokenizer.convert_tokens_to_ids(["[PAD]", "[SEP]", "[DEC]"])
    return {"pad": ids[0], "sep": ids[1], "bos": ids[2], "vocab_size": len(tokenizer)}


def make_tiny_blip(role_dir: Path, seed: int = 0) -> Path:
    """Save a tiny ``BlipForConditionalGeneration`` in the ``Salesforce/blip-image-captioning-base``
    layout (``config.json``, ``model.safetensors``, ``preprocessor_config.json`` and the tokenizer
    files) under ``role_dir``; return ``role_dir``."""
    import torch
    from transformers import BlipConfig, BlipForConditionalGeneration, BlipTextConfig, BlipVisionConfig

    out = Path(role_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    ids = write_blip_tokenizer(out)
    small = dict(hidden_size=BLIP_DIM, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2)
    vision = BlipVisionConfig(**small, image_size=BLIP_IMAGE_SIZE, patch_size=8)
    text = BlipTextConfig(
        **small,
        vocab_size=ids["vocab_size"],
        encoder_hidden_size=BLIP_DIM,
        max_position_embeddings=64,
        bos_token_id=ids["bos"],
        sep_token_id=ids["sep"],
        pad_token_id=ids["pad"],
        eos_token_id=ids["sep"],
    )
    config = BlipConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=BLIP_DIM)
    config.architectures = ["BlipForConditionalGeneration"]
    BlipForConditionalGeneration(config).eval().save_pretrained(out, safe_serialization=True)
    (out / "generation_config.json").unlink(missing_ok=True)  # the real repo has none
    preprocessor = {
        "do_normalize": True,
        "do_resize": True,
        "image_mean": CLIP_MEAN,
        "image_std": CLIP_STD,
        "image_processor_type": "BlipImageProcessor",
        "processor_class": "BlipProcessor",
        "size": BLIP_IMAGE_SIZE,
    }
    (out / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2))
    return out
