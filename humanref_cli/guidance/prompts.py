"""Prompts: caption clean-up, view-dependent suffixes, negative prompt, cached embeddings (method.md §2.5)."""

from __future__ import annotations

import torch

NEGATIVE_PROMPT = "worst quality, low quality, blurry, lack of texture detail"

# View classes in the order threestudio checks them; the suffix is appended to the subject prompt.
VIEW_SUFFIXES = {
    "front": ", front view",
    "side": ", side view",
    "side_rear": ", side rear view, no face",
    "back": ", back view, no face",
    "overhead": ", overhead view",
}


def clean_caption(caption: str) -> str:
    """The released code's BLIP-2 caption post-processing (method.md §2.5).

    >>> clean_caption("there is a man in a close up with white background")
    'a man in a photo with ground, high quality'
    """
    text = caption.strip().replace("there is ", "").replace("close up", "photo")
    text = text.replace("black background", "ground").replace("white background", "ground")
    return text + ", high quality"


def shift_azimuth(azimuth: float) -> float:
    """Azimuth in degrees mapped to (-180, 180]."""
    a = (azimuth + 180.0) % 360.0 - 180.0
    return 180.0 if a == -180.0 else a


def view_class(azimuth: float, elevation: float, front_deg: float = 30.0, back_deg: float = 30.0) -> str:
    """Direction class of a camera: overhead > back > side_rear > front > side (threestudio order)."""
    a = abs(shift_azimuth(azimuth))
    if elevation > 60.0:
        return "overhead"
    if a > 180.0 - back_deg:
        return "back"
    if 90.0 < a <= 180.0 - back_deg:
        return "side_rear"
    if a < front_deg:
        return "front"
    return "side"


def view_prompt(prompt: str, azimuth: float, elevation: float) -> str:
    return prompt + VIEW_SUFFIXES[view_class(azimuth, elevation)]


@torch.no_grad()
def encode_prompts(tokenizer, text_encoder, prompts: list[str], device, dtype) -> torch.Tensor:
    """CLIP text embeddings ``(P, L, D)`` (last hidden state, padded to the tokenizer's max length)."""
    ids = tokenizer(
        prompts,
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids.to(device)
    return text_encoder(ids)[0].to(dtype)


class PromptEmbeddings:
    """Conditional embeddings per view class and the negative embedding, encoded once.

    ``get(view) -> (cond (1, L, D), uncond (1, L, D))``. All classes are encoded up front so the text
    encoder is never run inside the optimisation loop and may be freed afterwards.
    """

    def __init__(self, cond: dict[str, torch.Tensor], uncond: torch.Tensor, prompt: str = ""):
        self.cond = cond
        self.uncond = uncond
        self.prompt = prompt

    @classmethod
    def encode(cls, prompt: str, tokenizer, text_encoder, device, dtype) -> PromptEmbeddings:
        views = list(VIEW_SUFFIXES)
        texts = [prompt + VIEW_SUFFIXES[v] for v in views] + [NEGATIVE_PROMPT]
        emb = encode_prompts(tokenizer, text_encoder, texts, device, dtype)
        return cls({v: emb[i : i + 1] for i, v in enumerate(views)}, emb[-1:], prompt)

    def get(self, view: str) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cond[view], self.uncond
