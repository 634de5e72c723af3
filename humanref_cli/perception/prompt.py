"""The text prompt: ``--prompt`` > a BLIP caption (when BLIP is present) > "a photo of a person"
(method.md §2.5). Captions get the released code's clean-up; the negative prompt is the released one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_PROMPT = "a photo of a person"


@dataclass(frozen=True)
class Prompt:
    """``text`` the prompt, ``negative`` the negative prompt, ``source`` user | blip | default,
    ``caption`` the raw caption when BLIP wrote it."""

    text: str
    negative: str
    source: str
    caption: str | None = None

    def to_text(self) -> str:
        """``prompt.txt``: the prompt on the first line, the negative prompt on the second."""
        return f"{self.text}\n{self.negative}\n"


def blip_caption(model_dir: Path, rgb: np.ndarray, device="cpu", max_new_tokens: int = 30) -> str:
    """Caption ``rgb (H, W, 3)`` uint8 with BLIP (transformers ``BlipForConditionalGeneration``)."""
    import torch
    from PIL import Image
    from transformers import BlipForConditionalGeneration, BlipProcessor

    processor = BlipProcessor.from_pretrained(model_dir, local_files_only=True)
    model = BlipForConditionalGeneration.from_pretrained(model_dir, local_files_only=True).to(device).eval()
    inputs = processor(images=Image.fromarray(rgb), return_tensors="pt").to(device)
    with torch.no_grad():
        ids = model.generate(**inputs, max_new_tokens=max_new_tokens)
    return processor.decode(ids[0], skip_special_tokens=True).strip()


def make_prompt(user_prompt: str | None, caption: str | None) -> Prompt:
    """The prompt from a user's text (used as is) or a caption (cleaned up), else the default."""
    from humanref_cli.guidance.prompts import NEGATIVE_PROMPT, clean_caption

    if user_prompt is not None and user_prompt.strip():
        return Prompt(user_prompt.strip(), NEGATIVE_PROMPT, "user")
    if caption:
        return Prompt(clean_caption(caption), NEGATIVE_PROMPT, "blip", caption)
    return Prompt(DEFAULT_PROMPT, NEGATIVE_PROMPT, "default")
