"""Tiny randomly initialised SAM and SegFormer saved in the layouts ``models/store.find_model`` expects.

They are loaded by the same code that loads the real weights (``perception.sam.load_sam``,
``perception.segformer.load_parser``), so tests exercise the real loading path. Their outputs are
random; tests check the plumbing and the fallbacks, not segmentation quality. Nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

TINY_SAM_ARCH = {
    "encoder_embed_dim": 32,
    "encoder_depth": 2,
    "encoder_num_heads": 2,
    "encoder_global_attn_indexes": [1],
    "image_size": 64,
    "patch_size": 16,
    "window_size": 2,
    "prompt_embed_dim": 32,
    "mask_in_chans": 4,
    "decoder_mlp_dim": 64,
    "decoder_num_heads": 2,
    "iou_head_hidden_dim": 32,
}

# The label names of mattmdjaga/segformer_b2_clothes (ATR), which the real parser uses.
ATR_LABELS = (
    "Background",
    "Hat",
    "Hair",
    "Sunglasses",
    "Upper-clothes",
    "Skirt",
    "Pants",
    "Dress",
    "Belt",
    "Left-shoe",
    "Right-shoe",
    "Face",
    "Left-leg",
    "Right-leg",
    "Left-arm",
    "Right-arm",
    "Bag",
    "Scarf",
)


def make_tiny_sam(role_dir: Path, seed: int = 0) -> Path:
    """Write ``sam_vit_h_4b8939.pth`` (a tiny ``Sam`` state dict under the locked file name) and
    ``sam_config.json`` (its architecture) to ``role_dir``; return ``role_dir``."""
    import torch

    from humanref_cli.perception.sam import build_sam

    role_dir = Path(role_dir)
    role_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    sam = build_sam({**TINY_SAM_ARCH})
    torch.save(sam.state_dict(), role_dir / "sam_vit_h_4b8939.pth")
    (role_dir / "sam_config.json").write_text(json.dumps(TINY_SAM_ARCH, indent=2))
    return role_dir


def make_tiny_segformer(role_dir: Path, seed: int = 0, size: int = 64) -> Path:
    """Write a tiny ``SegformerForSemanticSegmentation`` with the ATR labels and its image processor
    (``config.json``, ``model.safetensors``, ``preprocessor_config.json``) to ``role_dir``."""
    import torch
    from transformers import SegformerConfig, SegformerForSemanticSegmentation, SegformerImageProcessor

    role_dir = Path(role_dir)
    torch.manual_seed(seed)
    config = SegformerConfig(
        num_encoder_blocks=2,
        depths=[1, 1],
        sr_ratios=[2, 1],
        hidden_sizes=[8, 16],
        patch_sizes=[7, 3],
        strides=[4, 2],
        num_attention_heads=[1, 2],
        mlp_ratios=[2, 2],
        decoder_hidden_size=16,
        id2label=dict(enumerate(ATR_LABELS)),
        label2id={name: i for i, name in enumerate(ATR_LABELS)},
    )
    model = SegformerForSemanticSegmentation(config).eval()
    model.save_pretrained(role_dir, safe_serialization=True)
    processor = SegformerImageProcessor(size={"height": size, "width": size})
    processor.save_pretrained(role_dir)
    return role_dir
