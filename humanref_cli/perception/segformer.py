"""The SegFormer clothes parser (transformers) as the human-parsing source, in LIP's 20 labels.

The released code parses with SCHP trained on LIP (method.md §2.4) and groups LIP labels into regions.
Any SegFormer parser is mapped to LIP through its own ``id2label`` names, so the ATR-labelled
``segformer_b2_clothes`` of ``models.lock`` and a LIP-trained model both work; names with no LIP
counterpart (bag, belt) become background, since they are not part of a body region.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from humanref_cli.errors import MissingModel

LIP_LABELS = (
    "background",
    "hat",
    "hair",
    "glove",
    "sunglasses",
    "upper-clothes",
    "dress",
    "coat",
    "socks",
    "pants",
    "jumpsuits",
    "scarf",
    "skirt",
    "face",
    "left-arm",
    "right-arm",
    "left-leg",
    "right-leg",
    "left-shoe",
    "right-shoe",
)
_ALIASES = {
    "upperclothes": "upper-clothes",
    "jumpsuit": "jumpsuits",
    "shoes": "left-shoe",
    "leftshoe": "left-shoe",
    "rightshoe": "right-shoe",
    "leftleg": "left-leg",
    "rightleg": "right-leg",
    "leftarm": "left-arm",
    "rightarm": "right-arm",
    "gloves": "glove",
    "sock": "socks",
    "trousers": "pants",
    "null": "background",
}


def lip_index(name: str) -> int | None:
    """LIP label id of a parser's label name (case, spaces and underscores ignored), or None."""
    key = name.strip().lower().replace("_", "-").replace(" ", "-")
    key = _ALIASES.get(key.replace("-", ""), key)
    return LIP_LABELS.index(key) if key in LIP_LABELS else None


def label_table(id2label: dict) -> tuple[np.ndarray, list[str]]:
    """Lookup table ``(num_labels,)`` from the model's label ids to LIP ids, and the unmapped names."""
    n = max(int(k) for k in id2label) + 1
    table = np.zeros(n, np.uint8)
    unmapped = []
    for k, name in id2label.items():
        lip = lip_index(str(name))
        if lip is None:
            unmapped.append(str(name))
        table[int(k)] = lip or 0
    return table, unmapped


def load_parser(model_dir: Path, device="cpu"):
    """``(model, image_processor)`` from a ``save_pretrained`` directory, offline."""
    try:
        from transformers import AutoImageProcessor, SegformerForSemanticSegmentation
    except ImportError as e:
        raise MissingModel(f"transformers is not installed ({e})", hint="pip install transformers") from None
    model = (
        SegformerForSemanticSegmentation.from_pretrained(model_dir, local_files_only=True).to(device).eval()
    )
    processor = AutoImageProcessor.from_pretrained(model_dir, local_files_only=True)
    return model, processor


def parse_lip(model, processor, rgb: np.ndarray) -> np.ndarray:
    """LIP label map ``(H, W)`` uint8 of ``rgb (H, W, 3)`` uint8 (logits bilinearly upsampled)."""
    import torch

    inputs = processor(images=rgb, return_tensors="pt").to(model.device)
    with torch.no_grad():
        logits = model(**inputs).logits  # (1, L, h, w)
    logits = torch.nn.functional.interpolate(logits, size=rgb.shape[:2], mode="bilinear", align_corners=False)
    labels = logits.argmax(1)[0].cpu().numpy()
    table, _ = label_table(model.config.id2label)
    return table[labels]
