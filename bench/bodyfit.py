"""The body fit alone on synthetic subjects: prep's fit against the same objective started at the
truth (docs/decisions.md 4p), both as aligned Chamfer (cm) against the true body.

Each seed gets a subject and a real `cpu` prep (kept under ``--work``, so a second run only refits);
the fit is then re-run from the workspace's keypoints, mask, world landmarks and legs' shading, once
from the rest pose (what prep does) and once from the true parameters mapped into the crop. If the
truth-started fit walks away, the objective's minimum is not the truth and no optimiser will find it.

    python bench/bodyfit.py --seeds 0-23        # ~20 s a new subject, ~30 s a seed to refit twice

Prints a table and writes bench/results/bodyfit.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from machine_info import machine_info  # bench/ is sys.path[0] when run as a script


def seeds(text: str) -> list[int]:
    out = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def truth_in_crop(gt_cam: dict, crop_cam: dict):
    """The subject's true ``BodyParams`` in the prep crop's frame (inverse of ``crop_to_subject``)."""
    from humanref_cli.eval.body_fit import crop_to_subject
    from humanref_cli.geometry.anny_body import BodyParams

    p = BodyParams.from_dict(gt_cam["body"])
    k, t = crop_to_subject(crop_cam["crop_box_photo"], int(gt_cam["size"][0]))
    p.scale /= k
    p.translation = ((np.asarray(p.translation) - t) / k).tolist()
    return p


def refit(body, subject: Path, init) -> float:
    """Aligned Chamfer (cm) of the fit re-run from ``subject/ws/prep`` (from ``init`` when given)."""
    from PIL import Image

    from humanref_cli.configs.prep import PrepConfig
    from humanref_cli.eval.body_fit import crop_body_error
    from humanref_cli.perception.bodyfit import FitSettings, fit_body
    from humanref_cli.perception.shading_cue import limb_shading

    prep = subject / "ws" / "prep"
    kj = json.loads((prep / "keypoints.json").read_text())
    kp = np.array([[m["u"], m["v"]] for m in kj["landmarks"]])
    vis = np.array([m["visibility"] for m in kj["landmarks"]])
    world = None if kj["world_m"] is None else np.array(kj["world_m"])
    rgba = np.asarray(Image.open(prep / "image.png"))
    rgb, mask = rgba[..., :3], rgba[..., 3] > 127
    settings = FitSettings.from_prep(PrepConfig(), seed=0)
    shading = limb_shading(rgb, mask, kp, vis) if settings.w_shade > 0 else None
    fit = fit_body(body, kp, vis, mask, settings, world=world, limb_shading=shading, init=init)
    return crop_body_error(fit.vertices, fit.faces, prep, subject)["chamfer_cm"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=seeds, default=seeds("0-7"), help="e.g. 0-7 or 0,3,5-9")
    ap.add_argument("--work", type=Path, default=Path("/tmp/humanref-bench-bodyfit"))
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "bodyfit.json")
    a = ap.parse_args()

    from humanref_cli.configs.stage_configs import resolve_config
    from humanref_cli.geometry.anny_body import load_anny
    from humanref_cli.runtime import Runtime
    from humanref_cli.stages.prep import run_prep
    from humanref_cli.synth.subject import make_subject
    from humanref_cli.workspace import Workspace

    body = load_anny(on_first_build=print)
    cfg = resolve_config("prep", "cpu", [], None)
    rows = []
    for seed in a.seeds:
        subject = a.work / f"s{seed}"
        if not (subject / "ws" / "prep" / "body.ply").exists():
            make_subject(subject, seed=seed, body=body)
            run_prep(
                Workspace(subject / "ws"), subject / "image.png", cfg, Runtime(device_name="cpu", quiet=True)
            )
        gt_cam = json.loads((subject / "gt" / "camera.json").read_text())
        crop_cam = json.loads((subject / "ws" / "prep" / "camera.json").read_text())
        row = {
            "seed": seed,
            "pose": gt_cam["pose_style"],
            "rest_start_cm": round(refit(body, subject, None), 3),
            "truth_start_cm": round(refit(body, subject, truth_in_crop(gt_cam, crop_cam)), 3),
        }
        rows.append(row)
        print(
            f"seed {seed:3d} {row['pose']:13s} from rest {row['rest_start_cm']:.3f} cm   "
            f"from the truth {row['truth_start_cm']:.3f} cm",
            flush=True,
        )
    summary = {"benchmark": "bodyfit", "machine": machine_info(), "rows": rows, "goal_cm": 1.5}
    for key in ("rest_start_cm", "truth_start_cm"):
        vals = [r[key] for r in rows]
        summary[f"mean_{key}"] = round(float(np.mean(vals)), 3)
        summary[f"within_goal_{key}"] = sum(v <= 1.5 for v in vals)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(
        f"mean from rest {summary['mean_rest_start_cm']} cm, "
        f"from the truth {summary['mean_truth_start_cm']} cm -> {a.out}"
    )


if __name__ == "__main__":
    main()
