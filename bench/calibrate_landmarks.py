"""Calibrate where mediapipe's 33 landmarks sit on the anny body, how far its depth can be trusted
per body segment and how the legs' shading tells which leg is forward (the maths:
``humanref_cli/perception/landmark_offsets.py``, ``depth_calibration.py`` and ``shading_cue.py``):
render synthetic subjects with known pose, run mediapipe on each photo, solve the per-landmark
offsets, the per-segment depth calibration and the shading calibration, report the residuals before
and after on the fitted seeds and on held-out ones. Subjects where mediapipe fails outright (mean
residual > 25 px) are left out and listed. The calibration seeds (default 1000-1047 and 1064-1463; the
last 40 kept are held out) are disjoint from the evaluation seeds (0-99) used by the tests and
bench/synthetic.py and from bench/prep.py's held-out subjects (1048-1063). The seeds draw their pose
styles, whose elbows bend at most 0.6 rad; ``--bent-seeds`` (default 2000-2099, the last 20 held out)
adds subjects of the ``elbows_bent`` style (``humanref synth --pose elbows_bent``), so no calibration
can lean on straight elbows (docs/decisions.md 4ac).

Usage::

    python bench/calibrate_landmarks.py [--seeds 1000-1047,1064-1463] [--bent-seeds 2000-2099]
        [--work /tmp/hr_calib] [--pose heavy]

Writes ``humanref_cli/data/mediapipe_anny_offsets.json`` and ``bench/results/calibrate_landmarks.json``
(``--pose heavy``: mediapipe's heavy landmark model, installed first with ``humanref models pull
pose_heavy``; ``mediapipe_heavy_anny_offsets.json`` and ``calibrate_landmarks_heavy.json``) and prints
the per-landmark and per-segment residuals before and after on the fitting and the held-out seeds.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _seeds(spec: str) -> list[int]:
    """``"a-b,c,d-e"`` -> the seeds, ranges inclusive."""
    out: list[int] = []
    for part in spec.split(","):
        a, _, b = part.partition("-")
        out += range(int(a), int(b or a) + 1)
    return out


def _subject_dir(work: Path, seed: int, style: str | None) -> Path:
    return work / (f"s{seed}" if style is None else f"s{seed}_{style}")


def _label(seed: int, style: str | None) -> int | str:
    """How a subject is listed in the JSON: its seed, or ``"seed:style"`` for a forced style."""
    return seed if style is None else f"{seed}:{style}"


def _observe(seed: int, style: str | None, work: Path, body, pose: str) -> dict:
    """Detections and ground-truth landmark frames of one synthetic subject (cached as .npz)."""
    import torch
    from PIL import Image

    from humanref_cli.geometry.anny_body import BodyParams, forward_params
    from humanref_cli.perception.person import detect_people
    from humanref_cli.synth.subject import make_subject

    sdir = _subject_dir(work, seed, style)
    cache = work / f"obs_{sdir.name[1:]}.npz"
    if cache.exists():
        return dict(np.load(cache))
    if not (sdir / "gt" / "camera.json").exists():
        make_subject(sdir, seed, 512, body, pose=style)
    rgb = np.asarray(Image.open(sdir / "image.png").convert("RGB"))
    people = detect_people(rgb, 1, pose)
    gt = json.loads((sdir / "gt" / "camera.json").read_text())
    with torch.no_grad():
        out = forward_params(body, BodyParams.from_dict(gt["body"]))
    obs = {
        "found": np.array(bool(people)),
        "keypoints": people[0].keypoints if people else np.zeros((33, 2), np.float32),
        "visibility": people[0].visibility if people else np.zeros(33, np.float32),
        "world": people[0].world if people and people[0].world is not None else np.zeros((33, 3), np.float32),
        "landmarks": out.landmarks.double().numpy(),
        "frames": out.landmark_frames.double().numpy(),
        "valid": out.landmark_valid.numpy(),
        "res": np.array(rgb.shape[1]),
    }
    np.savez(cache, **obs)
    return obs


def _segment_depths(observations: list[dict], offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True and detected depth components ``(N, S)`` of the segments' unit directions; the truth is
    taken at the offset landmarks, where the fit compares them."""
    import torch

    from humanref_cli.perception.depth_calibration import mediapipe_world_to_axes, segment_depth
    from humanref_cli.perception.landmark_offsets import offset_landmarks

    true = np.stack([offset_landmarks(o["landmarks"], o["frames"], offsets) for o in observations])
    world = mediapipe_world_to_axes(
        torch.from_numpy(np.stack([o["world"] for o in observations]).astype(np.float64))
    )
    return segment_depth(torch.from_numpy(true)).numpy(), segment_depth(world).numpy()


def _depth_table(fit_obs: list[dict], held: list[dict], offsets: np.ndarray) -> dict:
    """Solve the depth calibration on ``fit_obs``; print and return it with its residuals."""
    import torch

    from humanref_cli.perception.depth_calibration import (
        CONDITIONED,
        FORESHORTENED,
        RIDGE,
        SEGMENTS,
        SHORTENING_PERCENTILE,
        DepthCalibration,
        segment_lengths,
        segment_shortening,
        segment_up,
        solve_depth_calibration,
    )

    truth, detected = _segment_depths(fit_obs, offsets)
    h_truth, h_detected = _segment_depths(held, offsets)
    up = np.stack([segment_up(o["keypoints"]) for o in fit_obs])
    conditioned = tuple(list(SEGMENTS).index(n) for n in CONDITIONED)
    shortened = tuple(list(SEGMENTS).index(n) for n in FORESHORTENED)
    lengths = np.stack([segment_lengths(o["keypoints"]) for o in fit_obs])
    rho = np.zeros(len(SEGMENTS))
    rho[list(shortened)] = np.percentile(lengths[:, list(shortened)], SHORTENING_PERCENTILE, axis=0)
    g = np.stack([segment_shortening(o["keypoints"], rho) for o in fit_obs])
    cal = solve_depth_calibration(
        truth, detected, up=up, conditioned=conditioned, curved=True, shortening=g, shortened=shortened
    )
    scale, bias, sigma = cal["scale"], cal["bias"], cal["sigma"]
    unread = solve_depth_calibration(truth, detected, up=up, conditioned=conditioned, curved=True)
    straight = solve_depth_calibration(truth, detected, up=up, conditioned=conditioned)
    plain = solve_depth_calibration(truth, detected)

    def predict(c, observations, m):
        """The targets the fit would use: the solved table ``c`` as a ``DepthCalibration``, evaluated
        at each observation's keypoints on its detected depths ``m (N, S)``."""
        keys = ("scale", "bias", "sigma", "up_scale", "up_bias", "curve", "shortening")
        table = DepthCalibration(**{k: torch.from_numpy(c[k]) for k in keys}, rho=torch.from_numpy(rho))
        return np.stack(
            [
                table.at_keypoints(o["keypoints"]).target(torch.from_numpy(mi)).numpy()
                for o, mi in zip(observations, m, strict=True)
            ]
        )

    def rms(t, d):
        return np.sqrt(np.mean((t - d) ** 2, axis=0))

    rows = {
        "before_fit": rms(truth, detected),
        "after_fit": rms(truth, predict(cal, fit_obs, detected)),
        "before_heldout": rms(h_truth, h_detected),
        "after_heldout": rms(h_truth, predict(cal, held, h_detected)),
        "after_heldout_unshortened": rms(h_truth, predict(unread, held, h_detected)),
        "after_heldout_straight": rms(h_truth, predict(straight, held, h_detected)),
        "after_heldout_unconditioned": rms(h_truth, predict(plain, held, h_detected)),
        "sign_agreement_fit": np.mean(np.sign(truth) == np.sign(detected), axis=0),
    }
    print(
        f"{'segment':12s} {'a':>6s} {'b':>6s} {'sigma':>6s}  fit rms before/after  held-out before/after"
        "  sign"
    )
    for k, name in enumerate(SEGMENTS):
        print(
            f"{name:12s} {scale[k]:6.2f} {bias[k]:+6.2f} {sigma[k]:6.3f}  {rows['before_fit'][k]:9.3f} "
            f"{rows['after_fit'][k]:6.3f}  {rows['before_heldout'][k]:12.3f} {rows['after_heldout'][k]:6.3f}"
            f" (unshortened {rows['after_heldout_unshortened'][k]:.3f},"
            f" straight {rows['after_heldout_straight'][k]:.3f},"
            f" unconditioned {rows['after_heldout_unconditioned'][k]:.3f})"
            f"  {rows['sign_agreement_fit'][k]:5.2f}"
        )
    return {
        "segments": list(SEGMENTS),
        "ridge": RIDGE,
        "scale": np.round(scale, 4).tolist(),
        "bias": np.round(bias, 4).tolist(),
        "sigma": np.round(sigma, 4).tolist(),
        "conditioned": list(CONDITIONED),
        "up_scale": np.round(cal["up_scale"], 4).tolist(),
        "up_bias": np.round(cal["up_bias"], 4).tolist(),
        "curve": np.round(cal["curve"], 4).tolist(),
        "foreshortened": list(FORESHORTENED),
        "shortening": np.round(cal["shortening"], 4).tolist(),
        "rho": np.round(rho, 4).tolist(),
        "rms": {k: np.round(v, 4).tolist() for k, v in rows.items()},
    }


def _elbow_table(fit_obs: list[dict], held: list[dict], offsets: np.ndarray) -> dict:
    """Solve the elbows' bias along the upper arm on ``fit_obs`` (``elbow_bias``); print and return it."""
    from humanref_cli.perception.elbow_bias import elbow_residuals, solve_elbow_bias

    fit_r, held_r = elbow_residuals(fit_obs, offsets), elbow_residuals(held, offsets)
    bias, line = solve_elbow_bias(fit_r), solve_elbow_bias(fit_r, depth=False)

    def rms(res, b):
        return [
            round(float(np.sqrt(np.mean((r - (0.0 if b is None else b.along(arm, v, m))) ** 2))), 4)
            for arm, (v, r, m) in enumerate(res)
        ]

    rows = {
        "before_fit": rms(fit_r, None),
        "after_fit": rms(fit_r, bias),
        "before_heldout": rms(held_r, None),
        "after_heldout": rms(held_r, bias),
        "after_heldout_line": rms(held_r, line),
    }
    print("elbow along the upper arm (fraction of its length): r = c1 v + c0 + c2 m + c3 v m")
    for arm, side in enumerate("LR"):
        v, r, _ = fit_r[arm]
        raised = v > 0.3
        print(
            f"  {side}: c1 {bias.slope[arm]:+.3f} c0 {bias.intercept[arm]:+.3f}"
            f" c2 {bias.depth_slope[arm]:+.3f} c3 {bias.cross[arm]:+.3f}"
            f"  mean r hanging {r[~raised].mean():+.3f} raised {r[raised].mean():+.3f}"
            f" ({raised.sum()} arms)  rms fit {rows['before_fit'][arm]:.3f} -> {rows['after_fit'][arm]:.3f},"
            f" held out {rows['before_heldout'][arm]:.3f} -> {rows['after_heldout'][arm]:.3f}"
            f" (line in v alone {rows['after_heldout_line'][arm]:.3f})"
        )
    return {
        "arms": ["L", "R"],
        "unit": "fraction of the detected upper arm's length, along it; v its upward component in the photo,"
        " m mediapipe's depth component of it",
        "slope": [round(x, 4) for x in bias.slope],
        "intercept": [round(x, 4) for x in bias.intercept],
        "depth_slope": [round(x, 4) for x in bias.depth_slope],
        "cross": [round(x, 4) for x in bias.cross],
        "rms": rows,
    }


def _shading_table(
    subjects: list[tuple[int, str | None]],
    observations: list[dict],
    work: Path,
    offsets: np.ndarray,
    holdout: int,
) -> dict:
    """Solve the legs' shading calibration (``perception/shading_cue.py``): least squares of the true
    ``x_left - x_right`` on the measured log brightness ratio, per pair, over the pairs measured."""
    from dataclasses import asdict

    from PIL import Image

    from humanref_cli.perception.depth_calibration import solve_depth_calibration
    from humanref_cli.perception.shading_cue import PAIR_SEGMENTS, PAIRS, ShadingSettings, limb_shading

    truth_x, _ = _segment_depths(observations, offsets)
    pairs = PAIR_SEGMENTS.numpy()
    truth = truth_x[:, pairs[:, 0]] - truth_x[:, pairs[:, 1]]  # (N, P)
    measured, valid = np.zeros_like(truth), np.zeros(truth.shape, bool)
    for n, ((seed, style), o) in enumerate(zip(subjects, observations, strict=True)):
        sdir = _subject_dir(work, seed, style)
        rgb = np.asarray(Image.open(sdir / "image.png").convert("RGB"))
        mask = np.asarray(Image.open(sdir / "gt" / "mask.png")) > 127
        cue = limb_shading(rgb, mask, o["keypoints"], o["visibility"])
        measured[n], valid[n] = cue.log_ratio, cue.valid
    n_fit = len(subjects) - holdout
    scale, bias, sigma, rows = np.zeros(len(PAIRS)), np.zeros(len(PAIRS)), np.zeros(len(PAIRS)), {}
    print(f"{'pair':8s} {'a':>6s} {'b':>6s} {'sigma':>6s}  held-out rms  sign (|truth| > 0.15)  used")
    for p, name in enumerate(PAIRS):
        f, h = valid[:n_fit, p], valid[n_fit:, p]
        line = solve_depth_calibration(truth[:n_fit][f, p : p + 1], measured[:n_fit][f, p : p + 1], ridge=0.0)
        a, b, sig = line["scale"], line["bias"], line["sigma"]
        scale[p], bias[p], sigma[p] = a[0], b[0], sig[0]
        held_rms = float(np.sqrt(np.mean((a[0] * measured[n_fit:][h, p] + b[0] - truth[n_fit:][h, p]) ** 2)))
        big = valid[:, p] & (np.abs(truth[:, p]) > 0.15)
        sign = float(np.mean(np.sign(truth[big, p]) == np.sign(a[0] * measured[big, p] + b[0])))
        rows[name] = {
            "heldout_rms": round(held_rms, 4),
            "sign_agreement": round(sign, 3),
            "used": int(valid[:, p].sum()),
        }
        print(
            f"{name:8s} {a[0]:6.2f} {b[0]:+6.2f} {sig[0]:6.3f}  {held_rms:11.3f}  {sign:20.2f}"
            f"  {valid[:, p].sum()}/{len(subjects)}"
        )
    return {
        "pairs": list(PAIRS),
        "settings": asdict(ShadingSettings()),
        "scale": np.round(scale, 4).tolist(),
        "bias": np.round(bias, 4).tolist(),
        "sigma": np.round(sigma, 4).tolist(),
        "checks": rows,
    }


def main() -> None:
    from humanref_cli.geometry.anny_body import load_anny
    from humanref_cli.io import write_json
    from humanref_cli.perception.landmark_offsets import (
        CALIBRATION_FILES,
        RIDGE,
        residuals,
        solve_offsets,
        usable,
    )
    from humanref_cli.perception.person import POSE_MODELS, detector_id
    from humanref_cli.synth.subject import MEDIAPIPE_NAMES

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="1000-1047,1064-1463", help="calibration seeds, 'a-b,c' inclusive")
    ap.add_argument("--holdout", type=int, default=40, help="last N seeds only measured, not fitted")
    ap.add_argument("--bent-seeds", default="2000-2099", help="seeds posed elbows_bent ('' for none)")
    ap.add_argument("--bent-holdout", type=int, default=20, help="last N of those only measured")
    ap.add_argument("--work", type=Path, default=None, help="default /tmp/hr_calib[_heavy]")
    ap.add_argument("--pose", choices=list(POSE_MODELS), default="full", help="mediapipe's landmark model")
    args = ap.parse_args()
    args.work = args.work or Path("/tmp/hr_calib" + ("" if args.pose == "full" else f"_{args.pose}"))
    if args.pose == "heavy":
        from humanref_cli.models.store import find_model, resolve_models_dir
        from humanref_cli.perception.pose_heavy import FILE_NAME, install, locked_sha256

        pulled = find_model("pose_heavy", resolve_models_dir(None))
        if pulled is None:
            raise SystemExit("the heavy pose model is not pulled: humanref models pull pose_heavy")
        install(pulled / FILE_NAME, locked_sha256())
    groups = [([(s, None) for s in _seeds(args.seeds)], args.holdout)]
    if args.bent_seeds:
        groups.append(([(s, "elbows_bent") for s in _seeds(args.bent_seeds)], args.bent_holdout))
    if min(s for subjects, _ in groups for s, _ in subjects) < 100:
        raise SystemExit("calibration seeds must be >= 100: 0-99 are evaluation seeds")
    args.work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    body = load_anny()
    fitted, held_out, failed = [], [], []
    for subjects, holdout in groups:  # each group holds out its own last seeds
        kept = []
        for seed, style in subjects:
            o = _observe(seed, style, args.work, body, args.pose)
            (kept if usable(o) else failed).append(((seed, style), o))
        fitted += kept[: len(kept) - holdout]
        held_out += kept[len(kept) - holdout :]
    failed = [_label(*k) for k, _ in failed]
    print(f"{len(failed)} detector failures left out: {failed}")
    fitted_seeds, held_seeds = [_label(*k) for k, _ in fitted], [_label(*k) for k, _ in held_out]
    fit_obs, held = [o for _, o in fitted], [o for _, o in held_out]
    offsets = solve_offsets(fit_obs)
    zero = np.zeros((33, 3))
    table = {
        "before_fit": residuals(fit_obs, zero),
        "after_fit": residuals(fit_obs, offsets),
        "before_heldout": residuals(held, zero),
        "after_heldout": residuals(held, offsets),
    }
    print(f"{'landmark':18s} {'offset (anny m)':>26s}  fit px before/after  held-out px before/after")
    for k, name in enumerate(MEDIAPIPE_NAMES):
        o = ", ".join(f"{x:+.3f}" for x in offsets[k])
        print(
            f"{name:18s} {o:>26s}  {table['before_fit'][k]:6.1f} {table['after_fit'][k]:6.1f}"
            f"        {table['before_heldout'][k]:6.1f} {table['after_heldout'][k]:6.1f}"
        )
    means = {k: float(np.nanmean(v)) for k, v in table.items()}
    print("mean px:", {k: round(v, 2) for k, v in means.items()})
    depth = _depth_table(fit_obs, held, offsets)
    elbows = _elbow_table(fit_obs, held, offsets)
    shading = _shading_table([k for k, _ in fitted + held_out], fit_obs + held, args.work, offsets, len(held))
    data = {
        "format": "humanref.landmark-offsets v1",
        "detector": detector_id(args.pose),
        "frame": "anny units (metres) in the frame of anny_body.LANDMARK_BONES[k]",
        "seeds_fitted": fitted_seeds,
        "seeds_heldout": held_seeds,
        "seeds_left_out": failed,
        "ridge": RIDGE,
        "offsets": np.round(offsets, 5).tolist(),
        "mean_residual_px": {k: round(v, 3) for k, v in means.items()},
        "depth_directions": depth,
        "elbow_along": elbows,
        "shading_pairs": shading,
    }
    write_json(ROOT / "humanref_cli" / "data" / CALIBRATION_FILES[args.pose], data)
    suffix = "" if args.pose == "full" else f"_{args.pose}"
    write_json(
        ROOT / "bench" / "results" / f"calibrate_landmarks{suffix}.json",
        {
            **data,
            "per_landmark_px": {k: np.round(v, 2).tolist() for k, v in table.items()},
            "seconds": round(time.time() - t0, 1),
        },
    )


if __name__ == "__main__":
    main()
