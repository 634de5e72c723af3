"""The body fit alone on synthetic subjects: prep's fit against the same objective started at the
truth (docs/decisions.md 4p), both as aligned Chamfer (cm) against the true body.

Each seed gets a subject and a real `cpu` prep (kept under ``--work``, so a second run only refits);
the fit is then re-run from the workspace's keypoints, mask, world landmarks and legs' shading, once
from the rest pose (what prep does) and once from the true parameters mapped into the crop. If the
truth-started fit walks away, the objective's minimum is not the truth and no optimiser will find it.

    python bench/bodyfit.py --seeds 0-23        # ~20 s a new subject, ~30 s a seed to refit twice

A variant of the fit is measured with ``--set`` (prep's ``fit_*`` keys, as ``humanref prep --set``; the
preps themselves are made once with the defaults, so variants share them), ``--fit-seed`` (the fit's
own seed: the silhouette's boundary samples) and ``--rest-only`` (skip the truth-started fit);
``--parts`` adds each body part's signed depth error and in-plane error (decisions 4x) and
``--pose elbows_bent`` makes new subjects in that style (``humanref synth --pose``; give them their own
``--work``, decision 4ac) and
``--compare base.json`` the paired difference from an earlier run on the same seeds (mean, paired t,
how many seeds got better: single subjects move by ±0.2 cm with any change of the objective, 4u, so
a variant is judged on many seeds and a held-out set). One thread with ``--threads 1`` runs two
harnesses side by side (results differ from two threads in the last digits, docs/decisions.md 4s).
Rounds 15–17 compared variants this way (decisions 4r–4x):

    python bench/bodyfit.py --seeds 0-23 --rest-only --threads 1 --out /tmp/base.json
    python bench/bodyfit.py --seeds 0-23 --rest-only --threads 1 --set fit_steps_full=200 \
        --compare /tmp/base.json --out /tmp/steps200.json

Prints a table and writes bench/results/bodyfit.json (or ``--out``), with the settings it ran.
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


# Body parts of ``--parts``, by the name of the bone that weighs most on a vertex (first prefix wins).
PARTS = {
    "upperarm": "upper arm", "lowerarm": "forearm", "wrist": "hand", "finger": "hand", "metacarpal": "hand",
    "upperleg": "thigh", "lowerleg": "shin", "foot": "foot", "toe": "foot",
    "spine01": "hips", "spine02": "hips", "pelvis": "hips", "root": "hips",
    "spine": "chest", "clavicle": "chest", "breast": "chest", "shoulder": "chest",
}  # fmt: skip


def part_groups(body) -> np.ndarray:
    """``(V,)`` part name of each anny vertex: ``"<limb> L|R"``, ``"hips"``, ``"chest"`` or ``"head"``
    (the head, the neck and the face: everything :data:`PARTS` does not name)."""
    w = body.model.vertex_bone_weights.detach().cpu().numpy()
    idx = body.model.vertex_bone_indices.detach().cpu().numpy()
    bone = {i: b for b, i in body.bone_index.items()}
    heaviest = idx[np.arange(len(idx)), w.argmax(1)]
    names = []
    for b in (bone[int(i)] for i in heaviest):
        part = next((v for k, v in PARTS.items() if b.startswith(k)), "head")
        names.append(
            f"{part} {b[-1]}" if b[-2:] in (".L", ".R") and part not in ("hips", "chest", "head") else part
        )
    return np.array(names)


def part_errors(vertices, faces, prep: Path, subject: Path, groups: np.ndarray) -> dict[str, list[float]]:
    """Per part, ``[signed depth error, in-plane error]`` (cm, subject scaled to 1.75 m) of the fitted
    ``vertices (V, 3)`` against the truth's same vertices (both are anny meshes), the depth aligned as
    the Chamfer is (the surfaces' mean depths, ``eval.metrics.align_depth``); ``+`` is in front of the
    truth (towards the camera)."""
    import trimesh

    from humanref_cli.eval.body_fit import crop_to_subject_world
    from humanref_cli.eval.metrics import align_depth

    cam = json.loads((prep / "camera.json").read_text())
    gt_cam = json.loads((subject / "gt" / "camera.json").read_text())
    gt = trimesh.load(subject / "gt" / "mesh.ply", process=False, force="mesh")
    gv = np.asarray(gt.vertices)
    v = crop_to_subject_world(np.asarray(vertices), cam["crop_box_photo"], int(gt_cam["size"][0]))
    v = align_depth(v, np.asarray(faces), gv, np.asarray(gt.faces))
    d = (v - gv) * 175.0 / (gv[:, 2].max() - gv[:, 2].min())
    plane = np.linalg.norm(d[:, 1:], axis=1)
    return {
        g: [round(float(d[groups == g, 0].mean()), 1), round(float(plane[groups == g].mean()), 1)]
        for g in sorted(set(groups))
    }


def paired(base: list[dict], rows: list[dict], key: str) -> dict | None:
    """This run against ``base`` (another run's rows) on the seeds both measured with ``key``: the
    mean difference ``d`` (cm, negative = better), the paired t statistic ``mean(d) / (sd(d) / √n)``, how
    many seeds got better and how many are within 1.5 cm in each. None without two common seeds."""
    before = {r["seed"]: r[key] for r in base if key in r}
    common = [(before[r["seed"]], r[key]) for r in rows if r["seed"] in before]
    if len(common) < 2:
        return None
    b, v = np.array(common).T
    d = v - b
    sd = float(d.std(ddof=1))
    return {
        "seeds": len(d),
        "mean_diff_cm": round(float(d.mean()), 4),
        "t": round(float(d.mean()) / (sd / np.sqrt(len(d))), 2) if sd > 0 else 0.0,
        "better": int((d < 0).sum()),
        "within_goal": [int((b <= 1.5).sum()), int((v <= 1.5).sum())],
    }


def refit(body, subject: Path, init, settings, groups=None):
    """Aligned Chamfer (cm) of the fit with ``settings`` (``FitSettings``) re-run from
    ``subject/ws/prep`` (from ``init`` when given); with ``groups`` (:func:`part_groups`), also the
    per-part errors of :func:`part_errors`."""
    import dataclasses

    from PIL import Image

    from humanref_cli.eval.body_fit import crop_body_error
    from humanref_cli.perception.bodyfit import fit_body
    from humanref_cli.perception.shading_cue import limb_shading

    prep = subject / "ws" / "prep"
    kj = json.loads((prep / "keypoints.json").read_text())
    settings = dataclasses.replace(settings, detector=kj.get("pose_model", "full"))
    kp = np.array([[m["u"], m["v"]] for m in kj["landmarks"]])
    vis = np.array([m["visibility"] for m in kj["landmarks"]])
    world = None if kj["world_m"] is None else np.array(kj["world_m"])
    rgba = np.asarray(Image.open(prep / "image.png"))
    rgb, mask = rgba[..., :3], rgba[..., 3] > 127
    shading = limb_shading(rgb, mask, kp, vis) if settings.w_shade > 0 else None
    fit = fit_body(body, kp, vis, mask, settings, world=world, limb_shading=shading, init=init)
    chamfer = crop_body_error(fit.vertices, fit.faces, prep, subject)["chamfer_cm"]
    if groups is None:
        return chamfer
    return chamfer, part_errors(fit.vertices, fit.faces, prep, subject, groups)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=seeds, default=seeds("0-7"), help="e.g. 0-7 or 0,3,5-9")
    ap.add_argument("--work", type=Path, default=Path("/tmp/humanref-bench-bodyfit"))
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "bodyfit.json")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="a prep fit_* key=value")
    ap.add_argument("--fit-seed", type=int, default=0, help="the fit's seed (prep uses 0)")
    ap.add_argument("--rest-only", action="store_true", help="skip the fit started at the truth")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--parts", action="store_true", help="also each body part's depth and in-plane error")
    ap.add_argument("--models-dir", type=Path, default=None, help="pulled models for new preps (pose_heavy)")
    ap.add_argument("--compare", type=Path, default=None, help="a baseline run's JSON: paired differences")
    ap.add_argument("--pose", default=None, help="a pose style for new subjects (humanref synth --pose)")
    ap.add_argument("--light", default="front", help="new subjects lit from (synth --light)")
    a = ap.parse_args()

    import torch

    from humanref_cli.configs.stage_configs import resolve_config
    from humanref_cli.errors import UsageError
    from humanref_cli.geometry.anny_body import load_anny
    from humanref_cli.perception.bodyfit import FitSettings
    from humanref_cli.runtime import Runtime
    from humanref_cli.stages.prep import run_prep
    from humanref_cli.synth.subject import make_subject
    from humanref_cli.workspace import Workspace

    if a.threads:
        torch.set_num_threads(a.threads)
    body = load_anny(on_first_build=print)
    cfg = resolve_config("prep", "cpu", [], None)
    try:
        settings = FitSettings.from_prep(resolve_config("prep", "cpu", a.sets, None), seed=a.fit_seed)
    except UsageError as err:
        ap.error(f"--set: {err}")
    groups = part_groups(body) if a.parts else None
    starts = ("rest_start_cm",) if a.rest_only else ("rest_start_cm", "truth_start_cm")
    rows = []
    for seed in a.seeds:
        subject = a.work / f"s{seed}"
        if not (subject / "ws" / "prep" / "body.ply").exists():
            make_subject(subject, seed=seed, body=body, pose=a.pose, light=a.light)
            run_prep(
                Workspace(subject / "ws"),
                subject / "image.png",
                cfg,
                Runtime(device_name="cpu", quiet=True),
                models_dir=a.models_dir,
            )
        gt_cam = json.loads((subject / "gt" / "camera.json").read_text())
        crop_cam = json.loads((subject / "ws" / "prep" / "camera.json").read_text())
        kj = json.loads((subject / "ws" / "prep" / "keypoints.json").read_text())
        row = {"seed": seed, "pose": gt_cam["pose_style"], "pose_model": kj.get("pose_model", "full")}
        for key in starts:
            init = truth_in_crop(gt_cam, crop_cam) if key == "truth_start_cm" else None
            if a.parts:
                chamfer, row[key.replace("_cm", "_parts")] = refit(body, subject, init, settings, groups)
            else:
                chamfer = refit(body, subject, init, settings)
            row[key] = round(chamfer, 3)
        rows.append(row)
        truth = f"   from the truth {row['truth_start_cm']:.3f} cm" if "truth_start_cm" in row else ""
        print(f"seed {seed:3d} {row['pose']:13s} from rest {row['rest_start_cm']:.3f} cm{truth}", flush=True)
        if a.parts:
            limbs = "  ".join(f"{g} {d:+.1f}/{p:.1f}" for g, (d, p) in row["rest_start_parts"].items())
            print(f"    depth/plane cm: {limbs}", flush=True)
    summary = {
        "benchmark": "bodyfit",
        "machine": machine_info(),
        "settings": {
            "set": a.sets,
            "pose": a.pose,
            "light": a.light,
            "fit_seed": a.fit_seed,
            "threads": torch.get_num_threads(),
            "pose_models": sorted({r["pose_model"] for r in rows}),
        },
        "rows": rows,
        "goal_cm": 1.5,
    }
    for key in starts:
        vals = [r[key] for r in rows]
        summary[f"mean_{key}"] = round(float(np.mean(vals)), 3)
        summary[f"within_goal_{key}"] = sum(v <= 1.5 for v in vals)
    if a.compare is not None:
        base = json.loads(a.compare.read_text())["rows"]
        summary["compare"] = {"baseline": str(a.compare), **{k: paired(base, rows, k) for k in starts}}
        for key in starts:
            c = summary["compare"][key]
            if c:
                print(
                    f"against {a.compare.name}, {key.removesuffix('_cm').replace('_', ' ')}: "
                    f"{c['mean_diff_cm']:+.4f} cm (t {c['t']:+.2f}), better on {c['better']} of "
                    f"{c['seeds']}, within 1.5 cm {c['within_goal'][0]} -> {c['within_goal'][1]}"
                )
    a.out.parent.mkdir(parents=True, exist_ok=True)
    # one line a row: with --parts a row holds a pair of numbers for each of 17 body parts
    text = json.dumps({**summary, "rows": "ROWS"}, indent=2)
    text = text.replace('"ROWS"', "[\n" + ",\n".join("    " + json.dumps(r) for r in rows) + "\n  ]")
    a.out.write_text(text + "\n")
    means = ", ".join(f"{k.removesuffix('_cm').replace('_', ' ')} {summary['mean_' + k]} cm" for k in starts)
    print(f"mean {means} -> {a.out}")


if __name__ == "__main__":
    main()
