"""Training checkpoints that resume exactly: parameters, Adam moments, occupancy grid and every RNG state.

``ckpt/last.pt`` is ``{"step", "key", "model", "optimizer", "occupancy", "rng"}`` (design.md §3), written
atomically and read back with ``torch.load(..., weights_only=True)``, so it holds only tensors and plain
Python containers. ``step`` is the next step to run. The RNG states are Python's ``random``, NumPy's
legacy global generator, torch's CPU (and CUDA) generators and the loop's view generator.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from humanref_cli.errors import WorkspaceConflict
from humanref_cli.io import save_torch


def rng_state(view_gen: torch.Generator) -> dict[str, Any]:
    """Every random state the loop consumes, as tensors and plain containers."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
        "views": view_gen.get_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], view_gen: torch.Generator) -> None:
    """Inverse of :func:`rng_state`."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
    npy = state["numpy"]
    keys = npy["keys"].numpy().astype(np.uint32)
    np.random.set_state((npy["name"], keys, npy["pos"], npy["has_gauss"], npy["cached"]))
    torch.set_rng_state(state["torch"])
    view_gen.set_state(state["views"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    path: Path,
    *,
    step: int,
    key: str,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    occupancy: dict[str, torch.Tensor] | None,
    view_gen: torch.Generator,
) -> Path:
    """Write ``path`` atomically; ``step`` is the first step a resumed run will execute."""
    return save_torch(
        path,
        {
            "step": int(step),
            "key": key,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "occupancy": occupancy,
            "rng": rng_state(view_gen),
        },
    )


def load_checkpoint(path: Path, key: str, device: torch.device) -> dict[str, Any]:
    """Read a checkpoint (tensors only, ``weights_only=True``); refuse one written for another key."""
    ckpt = torch.load(path, map_location=device, weights_only=True)
    if ckpt.get("key") != key:
        raise WorkspaceConflict(
            f"checkpoint {path} was written with other settings or inputs",
            hint="rerun with --force to start the stage over",
        )
    # Generator states must live on the CPU whatever map_location said.
    ckpt["rng"]["torch"] = ckpt["rng"]["torch"].cpu()
    ckpt["rng"]["views"] = ckpt["rng"]["views"].cpu()
    return ckpt
