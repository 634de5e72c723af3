"""Wall time and peak memory of ``humanref prep`` on the CPU, on synthetic subjects (goal: < 60 s a photo
once anny's one-time cache exists), with the fit quality and accuracy against the ground truth.

Each prep runs in a child process, so its peak RSS is prep's alone (subject generation excluded).

    python bench/prep.py                  # 2 subjects, 512 px, cpu preset
    python bench/prep.py --seeds 0 1 2 --preset paper
    python bench/prep.py --seeds 0 1 --set prep.fit_w_shade=0    # any prep setting, as `--set` does

Prints a table and writes bench/results/prep.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine_info import machine_info  # bench/ is sys.path[0] when run as a script

CHILD = """
import json, sys, time
from pathlib import Path
t0 = time.perf_counter()
from humanref_cli.configs.stage_configs import resolve_config
from humanref_cli.runtime import Runtime
from humanref_cli.stages.prep import run_prep
from humanref_cli.workspace import Workspace
cfg = resolve_config("prep", sys.argv[3], sys.argv[4:], None)
result = run_prep(Workspace(sys.argv[2]), Path(sys.argv[1]), cfg, Runtime(device_name="cpu", quiet=True))
result["seconds"] = time.perf_counter() - t0
print(json.dumps(result))
"""


def run_one(image: Path, ws: Path, preset: str, sets: list[str]) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(image), str(ws), preset, *sets],
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"prep failed on {image}:\n{proc.stderr[-2000:]}")
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return {
        "wall_s": round(wall, 2),
        "peak_rss_mb": round(max(peak_kb, before) / 1024, 1),
        "keypoint_residual_px": result["keypoint_residual_px"],
        "silhouette_iou": result["silhouette_iou"],
        "mask_source": result["mask_source"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--res", type=int, default=512, help="synthetic photo size")
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="stage.key=value")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "prep.json")
    args = parser.parse_args()

    from humanref_cli.eval.body_fit import body_fit_error, silhouette_iou
    from humanref_cli.geometry.anny_body import load_anny
    from humanref_cli.synth.subject import make_subject

    body = load_anny()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            subject = Path(tmp) / f"s{seed}"
            info = make_subject(subject, seed=seed, res=args.res, body=body)
            row = {
                "seed": seed,
                "pose": info["pose_style"],
                **run_one(subject / "image.png", subject / "ws", args.preset, args.sets),
            }
            fit = body_fit_error(subject / "ws" / "prep", subject)
            row["body_chamfer_cm"] = round(fit["chamfer_cm"], 3)
            bbox = body_fit_error(subject / "ws" / "prep", subject, align="bbox")
            row["body_chamfer_bbox_cm"] = round(bbox["chamfer_cm"], 3)  # the convention before 4k
            row["mask_iou_gt"] = round(silhouette_iou(subject / "ws" / "prep", subject), 4)
            rows.append(row)
            print(
                f"seed {seed:3d} {row['pose']:13s} {row['wall_s']:7.1f} s {row['peak_rss_mb']:8.0f} MB "
                f"kp {row['keypoint_residual_px']:5.2f} px  mask vs GT {row['mask_iou_gt']:.3f}  "
                f"body IoU {row['silhouette_iou']:.3f}  "
                f"body vs GT {row['body_chamfer_cm']:.2f} cm (depth extents centred: "
                f"{row['body_chamfer_bbox_cm']:.2f})",
                flush=True,
            )
    summary = {
        "benchmark": "prep",
        "preset": args.preset,
        "sets": args.sets,
        "res": args.res,
        "machine": machine_info(),
        "rows": rows,
        "mean_wall_s": round(sum(r["wall_s"] for r in rows) / len(rows), 2),
        "mean_mask_iou_gt": round(sum(r["mask_iou_gt"] for r in rows) / len(rows), 4),
        "mean_body_chamfer_cm": round(sum(r["body_chamfer_cm"] for r in rows) / len(rows), 3),
        "mean_body_chamfer_bbox_cm": round(sum(r["body_chamfer_bbox_cm"] for r in rows) / len(rows), 3),
        "within_goal": sum(r["body_chamfer_cm"] <= 1.5 for r in rows),
        "goal_body_chamfer_cm": 1.5,
        "goal_wall_s": 60,
        "max_peak_rss_mb": max(r["peak_rss_mb"] for r in rows),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(
        f"mean wall {summary['mean_wall_s']} s, max peak RSS {summary['max_peak_rss_mb']} MB, "
        f"mean body vs GT {summary['mean_body_chamfer_cm']} cm -> {args.out}"
    )


if __name__ == "__main__":
    main()
