"""Turn a synthetic subject (``synth.subject.make_subject``) into a ``ws/prep`` folder without running prep.

For tests and benchmarks of the optimisation stages in isolation: the photo, mask and normal maps are
the subject's exact ground truth, and the "fitted body" is the ground-truth body shrunk along its vertex
normals by ``body_offset`` (a body fit sits inside the clothing; an exact body would make the prior
trivially perfect). The manifest gets a ``prep`` record as if the stage had run, so ``coarse`` accepts it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from humanref_cli.io import read_png, save_npy, write_json, write_png, write_text
from humanref_cli.workspace import Workspace


def _normals_from_png(path: Path, mask: np.ndarray) -> np.ndarray:
    n = read_png(path).astype(np.float32) / 255.0 * 2.0 - 1.0
    norm = np.linalg.norm(n, axis=-1, keepdims=True)
    n = np.where(norm > 1e-6, n / np.maximum(norm, 1e-6), 0.0)
    return np.where(mask[..., None], n, 0.0).astype(np.float32)


def _resize(image: np.ndarray, size: int, nearest: bool = False) -> np.ndarray:
    import cv2

    if image.shape[0] == size:
        return image
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_AREA)


PARTS = {1: "head", 2: "upper", 3: "lower", 4: "feet"}


def regions_from_parsing(parsing: np.ndarray) -> dict:
    """``regions.json`` content from a parsing map: padded part boxes (method.md §2.4, scaled from 512 px).

    Padding: x +-10 px; y 8 above and 15 below for the head, 8 / 8 for the others. ``face`` reuses the
    head box (synthetic parsing has no separate face label).
    """
    size = parsing.shape[0]
    s = size / 512.0
    parts = {}
    for label, name in PARTS.items():
        rows, cols = np.nonzero(parsing == label)
        if len(rows) == 0:
            continue
        below = 15 if name == "head" else 8
        box = [
            int(cols.min() - 10 * s),
            int(rows.min() - 8 * s),
            int(cols.max() + 1 + 10 * s),
            int(rows.max() + 1 + below * s),
        ]
        parts[name] = {"box": [min(max(v, 0), size) for v in box]}
    if "head" in parts:
        parts["face"] = dict(parts["head"])
    return {"size": [size, size], "parts": parts}


def prep_from_subject(
    subject_dir: Path, ws: Workspace, body_offset: float = 0.01, res: int | None = None
) -> Path:
    """Write ``ws/prep`` from a synthetic subject and record the ``prep`` stage as done; returns the folder.

    ``res`` resizes the images (default: the subject's resolution).
    """
    import trimesh

    subject_dir = Path(subject_dir)
    gt = subject_dir / "gt"
    prep = ws.root / "prep"
    if prep.exists():
        shutil.rmtree(prep)
    rgba = read_png(subject_dir / "image_rgba.png")
    res = res or rgba.shape[0]
    mask = read_png(gt / "mask.png") > 127
    front = _normals_from_png(gt / "normal_front.png", mask)
    back_png = read_png(gt / "normal_back.png")
    back = _normals_from_png(gt / "normal_back.png", np.any(back_png > 0, axis=-1))
    # synth stores the back map in the front image's layout (like ECON's output); prep stores it as the
    # back camera sees it (method.md §2.3's horizontal flip), which is what training compares against.
    back = np.ascontiguousarray(back[:, ::-1])
    mask_r = _resize(mask.astype(np.uint8) * 255, res, nearest=True)
    rgba_r = _resize(rgba, res)
    rgba_r[..., 3] = mask_r
    write_png(prep / "image.png", rgba_r)
    write_png(prep / "mask.png", mask_r)
    save_npy(prep / "normal_front.npy", _resize(front, res, nearest=True))
    save_npy(prep / "normal_back.npy", _resize(back, res, nearest=True))
    write_text(prep / "prompt.txt", "a photo of a person, high quality\n")
    parsing = _resize(read_png(gt / "parsing.png"), res, nearest=True)
    write_png(prep / "parsing.png", parsing)
    write_json(prep / "regions.json", regions_from_parsing(parsing))
    write_json(prep / "keypoints.json", _crop_keypoints(gt / "keypoints.json", res))

    mesh = trimesh.load(gt / "mesh.ply", process=False, force="mesh")
    body = trimesh.Trimesh(mesh.vertices - body_offset * mesh.vertex_normals, mesh.faces, process=False)
    body_path = prep / "body.ply"
    body_path.write_bytes(body.export(file_type="ply", encoding="binary"))

    record_prep(ws, f"synthetic {subject_dir.name}")
    return prep


def _crop_keypoints(path: Path, res: int) -> dict:
    """The subject's true landmarks in ``keypoints.json``'s layout (crop pixels ``u, v``, ``visibility``),
    scaled to ``res``: the synthetic prep's crop is the whole subject image."""
    gt = json.loads(Path(path).read_text())
    k = res / gt["size"][0]
    marks = [{"u": m["u"] * k, "v": m["v"] * k, "visibility": m["visibility"]} for m in gt["keypoints"]]
    return {"source": "synthetic ground truth", "landmarks": marks}


def record_prep(ws: Workspace, source: str) -> None:
    """Record the ``prep`` stage as done over the files now in ``ws/prep`` (as if prep had run)."""
    outputs = sorted(p for p in (ws.root / "prep").iterdir() if p.is_file())
    with ws.lock():
        ws.update_record(
            "prep",
            status="done",
            key="synthetic",
            inputs={},
            config=None,
            models={},
            outputs=ws.hash_files(outputs),
            step=0,
            steps=None,
            notes={"source": source},
        )
