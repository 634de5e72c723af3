"""Segment Anything (``segment-anything``) as the silhouette source, prompted with the person's box and
confident keypoints (design.md §2).

On disk a SAM model is a directory holding one state-dict checkpoint (``*.pth``, e.g. the official
``sam_vit_h_4b8939.pth``) and optionally ``sam_config.json``. The config names a ``model_type``
(``vit_h``, ``vit_l``, ``vit_b``; otherwise it is read from the checkpoint's file name) or spells out
the architecture field by field (tiny test models). The networks are always segment-anything's own
classes, and the weights load strictly with ``weights_only=True``.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np

from humanref_cli.errors import MissingModel

# segment_anything.build_sam's three published encoders.
SAM_TYPES = {
    "vit_h": {
        "encoder_embed_dim": 1280,
        "encoder_depth": 32,
        "encoder_num_heads": 16,
        "encoder_global_attn_indexes": [7, 15, 23, 31],
    },
    "vit_l": {
        "encoder_embed_dim": 1024,
        "encoder_depth": 24,
        "encoder_num_heads": 16,
        "encoder_global_attn_indexes": [5, 11, 17, 23],
    },
    "vit_b": {
        "encoder_embed_dim": 768,
        "encoder_depth": 12,
        "encoder_num_heads": 12,
        "encoder_global_attn_indexes": [2, 5, 8, 11],
    },
}
# The parts of the architecture build_sam fixes; a sam_config.json may override them (tiny models).
SAM_DEFAULTS = {
    "image_size": 1024,
    "patch_size": 16,
    "window_size": 14,
    "prompt_embed_dim": 256,
    "mask_in_chans": 16,
    "decoder_mlp_dim": 2048,
    "decoder_num_heads": 8,
    "iou_head_hidden_dim": 256,
}


def sam_architecture(model_dir: Path) -> tuple[Path, dict]:
    """The checkpoint file and the full architecture dict of the SAM model in ``model_dir``."""
    model_dir = Path(model_dir)
    checkpoints = sorted(model_dir.glob("*.pth"))
    if len(checkpoints) != 1:
        raise MissingModel(
            f"expected one SAM checkpoint (*.pth) in {model_dir}, found {len(checkpoints)}",
            hint="humanref models pull sam",
        )
    config_path = model_dir / "sam_config.json"
    config = json.loads(config_path.read_text()) if config_path.exists() else {}
    model_type = config.get("model_type") or next((t for t in SAM_TYPES if t in checkpoints[0].name), None)
    if model_type is None and "encoder_embed_dim" not in config:
        raise MissingModel(
            f"cannot tell the SAM model type of {checkpoints[0].name}",
            hint="name it sam_vit_h/l/b_*.pth or add sam_config.json with model_type",
        )
    arch = {
        **SAM_DEFAULTS,
        **SAM_TYPES.get(model_type, {}),
        **{k: v for k, v in config.items() if k != "model_type"},
    }
    return checkpoints[0], arch


def build_sam(arch: dict):
    """A randomly initialised ``segment_anything.modeling.Sam`` with architecture ``arch`` (as
    ``segment_anything.build_sam._build_sam`` builds it, with every size a parameter)."""
    import torch
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    dim, size = arch["prompt_embed_dim"], arch["image_size"]
    grid = size // arch["patch_size"]
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=arch["encoder_depth"],
            embed_dim=arch["encoder_embed_dim"],
            img_size=size,
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=arch["encoder_num_heads"],
            patch_size=arch["patch_size"],
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=arch["encoder_global_attn_indexes"],
            window_size=arch["window_size"],
            out_chans=dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=dim,
            image_embedding_size=(grid, grid),
            input_image_size=(size, size),
            mask_in_chans=arch["mask_in_chans"],
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=2,
                embedding_dim=dim,
                mlp_dim=arch["decoder_mlp_dim"],
                num_heads=arch["decoder_num_heads"],
            ),
            transformer_dim=dim,
            iou_head_depth=3,
            iou_head_hidden_dim=arch["iou_head_hidden_dim"],
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    return sam.eval()


def load_sam(model_dir: Path, device="cpu"):
    """Load the SAM model in ``model_dir`` (strict state-dict load, ``weights_only=True``)."""
    import torch

    try:
        import segment_anything  # noqa: F401
    except ImportError as e:
        raise MissingModel(
            f"segment-anything is not installed ({e})", hint="pip install segment-anything"
        ) from None
    checkpoint, arch = sam_architecture(model_dir)
    sam = build_sam(arch)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    sam.load_state_dict(state, strict=True)
    return sam.to(device)


def sam_mask(sam, rgb: np.ndarray, box, points: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """SAM's best mask ``(H, W)`` bool for the person in ``box (x0, y0, x1, y1)`` with positive
    ``points (K, 2)`` (pixels), and its predicted IoU score."""
    import torch
    from segment_anything import SamPredictor

    predictor = SamPredictor(sam)
    with torch.no_grad():
        predictor.set_image(np.ascontiguousarray(rgb))
        has_points = points is not None and len(points) > 0
        masks, scores, _ = predictor.predict(
            point_coords=np.asarray(points, np.float32) if has_points else None,
            point_labels=np.ones(len(points), np.int64) if has_points else None,
            box=np.asarray(box, np.float32),
            multimask_output=True,
        )
    best = int(np.argmax(scores))
    return masks[best].astype(bool), float(scores[best])
