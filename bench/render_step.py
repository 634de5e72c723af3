"""Seconds per training-like step of the volume renderer on a body-like prior, per resolution.

A step = ``render_view`` (stratified, occupancy grid, perturbed normals) + a simple loss (RGB MSE,
soft IoU on the opacity, SDF-prior term, SDF and normal smoothness) + backward + Adam. The prior is an
ellipsoid shaped like a standing body (0.18 x 0.30 x 0.85 half axes), SDF grid 128^3; the field is
the released configuration right after its initialisation (inv_std ~20, the slowest regime: a soft
density means many samples per ray). Prints a table and writes ``bench/results/render_step.json``.

    .venv/bin/python bench/render_step.py [--res 64 128 256 512] [--steps 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine_info import machine_info  # noqa: E402  (bench/ is sys.path[0] when run as a script)

from humanref_cli.geometry.body_sdf import BodyPriorSDF  # noqa: E402
from humanref_cli.geometry.field import FieldConfig, HumanField  # noqa: E402
from humanref_cli.render.camera import camera_to_world  # noqa: E402
from humanref_cli.render.occupancy import OccupancyGrid  # noqa: E402
from humanref_cli.render.volume import render_view  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "render_step.json"


def body_like_prior(resolution: int) -> tuple[BodyPriorSDF, float]:
    import trimesh

    mesh = trimesh.creation.icosphere(subdivisions=4, radius=1.0)
    mesh.apply_scale((0.18, 0.30, 0.85))
    start = time.perf_counter()
    prior = BodyPriorSDF.from_mesh(mesh.vertices, mesh.faces, resolution=resolution)
    return prior, time.perf_counter() - start


def step(field, occ, opt, res: int, gen: torch.Generator) -> dict:
    start = time.perf_counter()
    out = render_view(
        field,
        camera_to_world(0.0, 0.0, 1.0),
        res,
        res,
        torch.rand(3, generator=gen),
        occ=occ,
        stratified=True,
        generator=gen,
    )
    t_render = time.perf_counter() - start
    target = torch.full_like(out["rgb"], 0.5)
    o = out["opacity"]
    loss = (
        10 * (out["rgb"] - target).square().mean()
        + (1 - (o * o.detach().round()).sum() / (o + o.detach().round() - o * o.detach().round()).sum())
        + 100 * (out["sample_sdf"] - out["sample_prior_sdf"]).square().mean()
        + (out["sample_sdf"] - out["sample_sdf_perturb"]).abs().mean()
        + 2 * (out["sample_normal"] - out["sample_normal_perturb"]).abs().mean()
    )
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return {"render_s": t_render, "step_s": time.perf_counter() - start, "samples": out["sample_t"].numel()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--res", type=int, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument("--steps", type=int, default=2, help="timed steps per resolution (best is reported)")
    parser.add_argument("--prior-res", type=int, default=128)
    args = parser.parse_args()
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    prior, prior_s = body_like_prior(args.prior_res)
    field = HumanField(FieldConfig(backend="torch"), prior)
    occ = OccupancyGrid()
    occ.build(field, generator=gen)
    opt = torch.optim.Adam(field.parameters(), lr=1e-3, betas=(0.9, 0.99), eps=1e-15)
    rows = []
    for res in args.res:
        runs = [step(field, occ, opt, res, gen) for _ in range(args.steps)]
        best = min(runs, key=lambda r: r["step_s"])
        rows.append(
            {"res": res, **best, "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
        )
        r = rows[-1]
        print(
            f"{res:>5} px  step {r['step_s']:7.2f} s  (render {r['render_s']:6.2f} s)  "
            f"samples {r['samples']:>9}  peak RSS {r['peak_rss_gb']:.2f} GB",
            flush=True,
        )
    meta = {
        **machine_info(),
        "prior_grid": args.prior_res,
        "prior_precompute_s": prior_s,
        "occupied_fraction": float(occ.binary.float().mean()),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"prior precompute {prior_s:.1f} s at {args.prior_res}^3; wrote {RESULTS}")


if __name__ == "__main__":
    main()
