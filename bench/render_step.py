"""Seconds per training-like step of the volume renderer on a body-like prior, per resolution.

A step = ``render_view`` (stratified, occupancy grid, perturbed normals) + a simple loss (RGB MSE,
soft IoU on the opacity, SDF-prior term, SDF and normal smoothness) + backward + Adam. The prior is an
ellipsoid shaped like a standing body (0.18 x 0.30 x 0.85 half axes), SDF grid 128^3; the field is
the released configuration right after its initialisation (inv_std ~20, the slowest regime: a soft
density means many samples per ray); ``--theta 0.65`` gives the ``cpu`` preset's sharp density
(inv_std ~665). Each resolution runs once per ``--skip-group`` (the renderer's certified-empty skip,
``render/sdf_skip.py``; 0 = off) from the same initial field, so the two rows compare the renderer with
and without it. Prints a table and writes ``bench/results/render_step.json`` (or ``--out``).

    .venv/bin/python bench/render_step.py [--res 64 128 256 512] [--steps 2] [--theta 0.65] [--device cuda]
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

from machine_info import machine_info, sync  # noqa: E402  (bench/ is sys.path[0] when run as a script)

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


def step(field, occ, opt, res: int, gen: torch.Generator, skip_group: int) -> dict:
    device = field.theta.device
    sync(device)
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
        skip_group=skip_group,
    )
    sync(device)
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
    sync(device)
    return {"render_s": t_render, "step_s": time.perf_counter() - start, "samples": out["sample_t"].numel()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--res", type=int, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument("--steps", type=int, default=2, help="timed steps per resolution (best is reported)")
    parser.add_argument("--prior-res", type=int, default=128)
    parser.add_argument("--theta", type=float, default=0.3, help="inv_std = exp(10 theta); 0.3 is released")
    parser.add_argument("--skip-group", type=int, nargs="+", default=[8, 0], help="0: no certified skip")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    device = torch.device(args.device)
    prior, prior_s = body_like_prior(args.prior_res)
    rows = []
    for res in args.res:
        for group in args.skip_group:
            # the same initial field, grid and random draws for every setting
            torch.manual_seed(0)
            gen = torch.Generator().manual_seed(0)
            field = HumanField(FieldConfig(backend="torch", inv_std_init_theta=args.theta), prior).to(device)
            occ = OccupancyGrid().to(device)
            occ.build(field, generator=gen)
            opt = torch.optim.Adam(field.parameters(), lr=1e-3, betas=(0.9, 0.99), eps=1e-15)
            runs = [step(field, occ, opt, res, gen, group) for _ in range(args.steps)]
            best = min(runs, key=lambda r: r["step_s"])
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
            gpu_gb = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
            per_step = [r["samples"] for r in runs]  # the same for every setting: the skip keeps them all
            rows.append(
                {
                    "res": res,
                    "skip_group": group,
                    **best,
                    "samples_per_step": per_step,
                    "peak_rss_gb": rss,
                    "peak_gpu_gb": gpu_gb,
                }
            )
            r = rows[-1]
            print(
                f"{res:>5} px  skip {group:>2}  step {r['step_s']:7.2f} s  (render {r['render_s']:6.2f} s)  "
                f"samples/step {per_step}  peak RSS {r['peak_rss_gb']:.2f} GB",
                flush=True,
            )
    meta = {
        **machine_info(),
        "device": str(device),
        "prior_grid": args.prior_res,
        "prior_precompute_s": prior_s,
        "theta": args.theta,
        "occupied_fraction": float(occ.binary.float().mean()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"prior precompute {prior_s:.1f} s at {args.prior_res}^3; wrote {args.out}")


if __name__ == "__main__":
    main()
