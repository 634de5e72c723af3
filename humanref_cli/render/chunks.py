"""How much the volume renderer processes at a time, per device.

On the CPU small chunks cost nothing extra and bound memory. On CUDA the renderer launches ~300 small
kernels per ray chunk, and a 512 px training step with 8192-ray chunks spent ~80% of its time
launching them (profiled on an H100: 10k launches per step, 2.5 s of kernels against 11 s on the host
over 30 steps; bench/RESULTS.md), so CUDA takes chunks of 65536 rays and up to 2^20 samples, and keeps
activation checkpointing for steps whose activations (~9 KB per kept sample without it,
``render/volume.py``) would not fit in a quarter of the card's memory (20 GB on an 80 GB card, 6 GB on
a 24 GB one); a checkpointed chunk is no larger than that quarter either.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

ACTIVATION_BYTES_PER_SAMPLE = 9 * 1024
"""Field activations kept for backward per shaded sample without checkpointing (measured on CPU)."""


@dataclass(frozen=True)
class RenderChunks:
    """``ray_chunk`` rays marched and pruned at a time, ``sample_chunk`` kept samples shaded at a time,
    activation checkpointing when a step keeps more than ``checkpoint_above`` samples."""

    ray_chunk: int = 8192
    sample_chunk: int = 65536
    checkpoint_above: int = 131072


def render_chunks(device: torch.device) -> RenderChunks:
    """The chunk sizes for ``device``: the defaults on the CPU, larger ones on CUDA (module docstring)."""
    if device.type != "cuda":
        return RenderChunks()
    budget = torch.cuda.get_device_properties(device).total_memory / 4
    fits = int(budget / ACTIVATION_BYTES_PER_SAMPLE)  # samples whose activations fit in the budget
    # a checkpointed chunk's activations are rebuilt whole in backward: they must fit as well
    return RenderChunks(ray_chunk=65536, sample_chunk=min(1 << 20, fits), checkpoint_above=fits)
