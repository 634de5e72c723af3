"""Timings of the texture/export pieces on this machine: decimate, unwrap, bake, rasterise, export.

    python bench/texture_pipeline.py [--quick]

Uses a 160k-face sphere-like blob (about what marching cubes at 512³ gives for a body) and a smooth
procedural colour function. Prints a table and writes ``bench/results/texture_pipeline.json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import trimesh
from machine_info import machine_info  # bench/ is sys.path[0] when run as a script


def colour(p: torch.Tensor) -> torch.Tensor:
    return 0.5 + 0.4 * torch.sin(torch.stack([5 * p[:, 0], 7 * p[:, 1], 3 * p[:, 2]], -1))


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def main() -> None:
    from humanref_cli.geometry import formats as fm
    from humanref_cli.geometry.mesh_ops import clean_mesh, decimate
    from humanref_cli.geometry.uv_atlas import unwrap
    from humanref_cli.render.bake import bake_texture
    from humanref_cli.render.camera import camera_to_world
    from humanref_cli.render.diff_raster import render_textured
    from humanref_cli.render.raster import MeshRasterizer
    from humanref_cli.render.turntable import turntable_frames

    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a minute on 2 cores)")
    args = parser.parse_args()
    targets = (5000, 15000) if args.quick else (15000, 30000, 40000)
    sizes = (512, 1024) if args.quick else (1024, 2048)

    blob = trimesh.creation.icosphere(subdivisions=7)  # 327k faces
    blob.vertices *= 1.0 + 0.1 * np.sin(4 * blob.vertices[:, :1])
    rows = []
    (v, f), t = timed(clean_mesh, blob.vertices, blob.faces)
    rows.append(("clean", f"{len(blob.faces)} faces", t))
    for target in targets:
        (vd, fd), t = timed(decimate, v, f, target)
        rows.append(("decimate", f"-> {target}", t))
        atlas, t = timed(unwrap, vd, fd, texture_size=sizes[-1])
        rows.append(("xatlas unwrap", f"{target} faces", t))
    for size in sizes:
        (tex, _), t = timed(bake_texture, atlas.vertices, atlas.faces, atlas.uvs, colour, size=size)
        rows.append(("bake", f"{size}^2", t))
    tensors = [torch.as_tensor(x) for x in (atlas.vertices, atlas.faces, atlas.uvs)]
    texture = torch.as_tensor(tex).requires_grad_(True)
    for res in (256, 512):
        with MeshRasterizer(res, res) as raster:
            render_textured(raster, *tensors, texture, camera_to_world(0, 0))  # warm-up
            t0 = time.perf_counter()
            for k in range(5):
                render_textured(raster, *tensors, texture, camera_to_world(72 * k, 0))["rgb"].sum().backward()
            rows.append(
                ("diff raster fwd+bwd", f"{res}^2, {len(atlas.faces)} faces", (time.perf_counter() - t0) / 5)
            )
    mesh = fm.TexturedMesh(atlas.vertices, atlas.faces, atlas.uvs, (tex * 255).astype(np.uint8)).to_y_up()
    with tempfile.TemporaryDirectory() as tmp:
        for name, write in (("glb", fm.write_glb), ("ply", fm.write_ply)):
            _, t = timed(write, Path(tmp) / f"m.{name}", mesh)
            rows.append((f"write {name}", f"{len(mesh.faces)} faces", t))
        _, t = timed(fm.write_obj, Path(tmp) / "m.obj", mesh)
        rows.append(("write obj", f"{len(mesh.faces)} faces", t))
    frames, t = timed(turntable_frames, mesh, frames=12, size=384)
    rows.append(("turntable frame", "384^2, supersample 2", t / 12))

    print(f"{'step':<22} {'case':<28} {'seconds':>8}")
    for name, case, seconds in rows:
        print(f"{name:<22} {case:<28} {seconds:>8.3f}")
    out = Path(__file__).parent / "results" / "texture_pipeline.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "machine": machine_info(),
                "quick": args.quick,
                "rows": [{"step": n, "case": c, "seconds": round(s, 4)} for n, c, s in rows],
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
