"""``humanref eval ws/ --gt DIR``: metrics of a stage's result against a synthetic subject's ground truth.

Geometry: Chamfer, P2S (cm, subject height set to 1.75 m) and normal consistency of ``<stage>/mesh.ply``
and, for reference, of the fitted body ``prep/body.ply`` alone, both mapped from the crop's world frame
to the subject's (``prep/camera.json``'s crop box; the identity when prep was built from the ground
truth). Appearance: PSNR/SSIM of the field's front view against the input crop (``prep/image.png``)
and of the other views against ``gt/views`` (``az_XXX.png``), everything composited on white. Writes
``ws/eval.json`` and returns the same dict.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from humanref_cli.errors import UsageError
from humanref_cli.eval.body_fit import crop_to_subject_world
from humanref_cli.eval.metrics import align_depth, geometry_metrics, psnr, ssim
from humanref_cli.io import read_png, write_json
from humanref_cli.workspace import Workspace


def _load_mesh(path: Path):
    import trimesh

    mesh = trimesh.load(path, process=False, force="mesh")
    return np.asarray(mesh.vertices), np.asarray(mesh.faces)


def _crop_to_subject(ws: Workspace, gt_dir: Path):
    """The map from the workspace's world (the prep crop's frame) to the subject's world."""
    cam_path = ws.root / "prep" / "camera.json"
    if not cam_path.exists():
        return lambda v: v
    box = json.loads(cam_path.read_text())["crop_box_photo"]
    photo = int(json.loads((gt_dir / "gt" / "camera.json").read_text())["size"][0])
    return lambda v: crop_to_subject_world(v, box, photo)


def _on_white(rgba: np.ndarray, size: int) -> np.ndarray:
    """uint8 RGBA -> float RGB ``(size, size, 3)`` composited on white (area-resized when needed)."""
    import cv2

    img = rgba.astype(np.float32) / 255.0
    rgb = img[..., :3] * img[..., 3:4] + (1.0 - img[..., 3:4])
    if rgb.shape[0] != size:
        rgb = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)
    return rgb


def _render_on_white(field, occupancy, azimuth: float, size: int, chunk: int, step_size: float) -> np.ndarray:
    import torch

    from humanref_cli.render.camera import camera_to_world
    from humanref_cli.render.volume import render_view

    device = next(field.parameters()).device
    with torch.no_grad():
        out = render_view(
            field,
            camera_to_world(azimuth, 0.0).to(device),
            size,
            size,
            torch.ones(3, device=device),
            occ=occupancy,
            ray_chunk=chunk,
            step_size=step_size,
        )
    return out["rgb"].clamp(0, 1).cpu().numpy()


def gt_views(gt_dir: Path) -> dict[int, Path]:
    """``{azimuth: path}`` of the subject's ``gt/views/az_XXX.png`` renders."""
    views = {}
    for p in sorted((gt_dir / "gt" / "views").glob("az_*.png")):
        m = re.fullmatch(r"az_(\d+)\.png", p.name)
        if m:
            views[int(m.group(1))] = p
    return views


def run_eval(
    ws: Workspace, gt_dir: Path, rt, *, stage: str = "refine", res: int | None = None, chunk: int = 65536
) -> dict[str, Any]:
    """Metrics of ``stage`` (refine or coarse) against ``gt_dir``; ``res`` is the render size (input size)."""
    from humanref_cli.geometry.field import load_field
    from humanref_cli.render.occupancy import OccupancyGrid

    if stage not in ("coarse", "refine"):
        raise UsageError(f"--stage must be coarse or refine, got {stage!r}")
    gt_dir = Path(gt_dir)
    if not (gt_dir / "gt" / "mesh.ply").exists():
        raise UsageError(
            f"{gt_dir} is not a synthetic subject (no gt/mesh.ply)",
            hint="pass the folder written by `humanref synth`",
        )
    ws.require(stage)
    stage_dir = ws.root / stage
    gt_v, gt_f = _load_mesh(gt_dir / "gt" / "mesh.ply")
    result: dict[str, Any] = {"stage": stage, "gt": str(gt_dir)}
    to_subject = _crop_to_subject(ws, gt_dir)
    v, f = _load_mesh(stage_dir / "mesh.ply")
    v = to_subject(v)
    result["geometry"] = geometry_metrics(align_depth(v, f, gt_v, gt_f), f, gt_v, gt_f)
    result["geometry_as_placed"] = geometry_metrics(v, f, gt_v, gt_f)  # the depth prep chose
    body = ws.root / "prep" / "body.ply"
    if body.exists():
        v, f = _load_mesh(body)
        v = to_subject(v)
        result["body"] = geometry_metrics(align_depth(v, f, gt_v, gt_f), f, gt_v, gt_f)
        result["body_as_placed"] = geometry_metrics(v, f, gt_v, gt_f)

    field = load_field(stage_dir, rt.device)
    # render with the stage's own marching step (the cpu preset uses a coarser one)
    samples = (ws.record(stage) or {}).get("config", {}).get("optim", {}).get("samples_per_ray", 512)
    step_size = 1.732 * 2 / samples
    occupancy = OccupancyGrid(step_size=step_size).to(rt.device)
    occupancy.build(field)
    image = read_png(ws.root / "prep" / "image.png")
    size = res or image.shape[0]
    front = _render_on_white(field, occupancy, 0.0, size, chunk, step_size)
    target = _on_white(image, size)
    result["front"] = {"psnr": psnr(front, target), "ssim": ssim(front, target), "res": size}
    per_view = {}
    for az, path in gt_views(gt_dir).items():
        if az == 0:
            continue
        pred = _render_on_white(field, occupancy, float(az), size, chunk, step_size)
        gt = _on_white(read_png(path), size)
        per_view[f"az_{az:03d}"] = {"psnr": psnr(pred, gt), "ssim": ssim(pred, gt)}
    if per_view:
        result["novel"] = {
            "psnr": float(np.mean([v["psnr"] for v in per_view.values()])),
            "ssim": float(np.mean([v["ssim"] for v in per_view.values()])),
            "views": per_view,
        }
    write_json(ws.root / "eval.json", result)
    g = result["geometry"]
    rt.info(
        f"eval {stage}: chamfer {g['chamfer_cm']:.3f} cm, p2s {g['p2s_cm']:.3f} cm, "
        f"NC {g['normal_consistency']:.4f}, front PSNR {result['front']['psnr']:.2f} dB"
    )
    return result
