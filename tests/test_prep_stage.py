"""The prep stage end to end on a synthetic anny subject, against its exact ground truth."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from humanref_cli.configs.prep import PrepConfig, preset
from humanref_cli.runtime import Runtime
from humanref_cli.workspace import Workspace

QUICK_FIT = {"fit_steps_keypoints": 5, "fit_steps_full": 5}


def _rt() -> Runtime:
    return Runtime(device_name="cpu", quiet=True)


@pytest.fixture(scope="module")
def prepped(tmp_path_factory, subject):
    from humanref_cli.stages.prep import run_prep

    ws = Workspace(tmp_path_factory.mktemp("ws"))
    result = run_prep(ws, subject / "image.png", preset("cpu"), _rt())
    return ws, result


def test_outputs_and_notes(prepped):
    ws, result = prepped
    from humanref_cli.perception.bodyfit import FIT_ID
    from humanref_cli.perception.landmark_offsets import offsets_id

    assert ws.record("prep")["models"]["landmark_offsets"] == offsets_id()  # a new table re-runs prep
    assert ws.record("prep")["models"]["body_fit"] == FIT_ID  # so does a new fit objective
    prep = ws.root / "prep"
    from humanref_cli.stages.prep import OUTPUTS

    for name in (*OUTPUTS, "input.png"):
        assert (prep / name).is_file(), name
    rgba = np.asarray(Image.open(prep / "image.png"))
    mask = np.asarray(Image.open(prep / "mask.png")) > 127
    assert rgba.shape == (512, 512, 4) and ((rgba[..., 3] > 127) == mask).all()
    assert (rgba[~mask][:, :3] == 255).all()  # composited on white
    kp = json.loads((prep / "keypoints.json").read_text())
    assert len(kp["landmarks"]) == 33 and kp["person"] == 0
    assert kp["pose_model"] == "full" and kp["source"] == "embedded:mediapipe-pose-0.10.21"
    rec = ws.record("prep")
    notes = rec["notes"]
    assert rec["status"] == "done" and notes["mask_source"] == "mediapipe"
    assert notes["models_used"]["keypoints"] == "embedded:mediapipe-pose-0.10.21"
    assert notes["models_used"]["body"] == "embedded:anny-0.6.2"
    assert notes["keypoint_residual_px"] <= 8.0
    assert result["silhouette_iou"] == notes["silhouette_iou"] > 0.8
    normals = np.load(prep / "normal_front.npy")
    assert np.allclose(np.linalg.norm(normals[mask], axis=-1), 1, atol=1e-3) and (normals[~mask] == 0).all()
    back = np.load(prep / "normal_back.npy")
    assert (np.abs(back).sum(-1) > 0).sum() == mask.sum()  # the mirrored silhouette
    assert normals[mask][:, 0].mean() > 0.5 and back[mask[:, ::-1]][:, 0].mean() < -0.5  # facing +x / -x
    assert (prep / "prompt.txt").read_text().splitlines()[0] == "a photo of a person"
    assert Image.open(prep / "report.png").size == (1024, 540)


def test_the_written_silhouette_matches_the_ground_truth(prepped, subject, tmp_path):
    """``prep/mask.png`` mapped back onto the photo (eval.body_fit.silhouette_iou) against gt/mask.png;
    a copy shifted by 3 px scores lower, so the measure sees the frame."""
    import shutil

    from humanref_cli.eval.body_fit import silhouette_iou

    ws, result = prepped
    assert result["mask_edge_refined"] is True
    iou = silhouette_iou(ws.root / "prep", subject)
    assert iou >= 0.985, iou
    shifted = tmp_path / "prep"
    shutil.copytree(ws.root / "prep", shifted)
    mask = np.asarray(Image.open(shifted / "mask.png"))
    Image.fromarray(np.roll(mask, 3, axis=1)).save(shifted / "mask.png")
    assert silhouette_iou(shifted, subject) < iou - 0.03


def test_raised_arms_are_raised_at_the_shoulder_not_shrugged(prepped):
    """Seed 0 raises both arms sideways with the clavicles at rest; a free clavicle let the fit shrug
    (elevation, about anny's back axis y: 0.4 rad) and raise the upper arm less, which puts the
    keypoints in the same places. The bound sits halfway to that shrug: mediapipe's and torch's CPU
    kernels differ between machines, and the fitted elevation with them (0.105 rad on round 10's Xeon,
    below 0.1 on earlier machines)."""
    ws, _ = prepped
    pose = json.loads((ws.root / "prep" / "body.json").read_text())["params"]["pose"]
    for side in ("L", "R"):
        assert abs(pose.get(f"clavicle.{side}", [0.0, 0.0, 0.0])[1]) < 0.2


def test_the_spine_is_fitted_near_its_true_pitch(prepped, subject):
    """The spine's pitch (about anny's x) is invisible from the front but for the torso's
    foreshortening. mediapipe puts a raised arm's shoulder above anny's, and under a weak prior the fit
    shortened seed 0's torso by pitching the three spine bones about -0.3 rad in all (the neck +0.18 back)
    where the truth has +0.09; now -0.05 (docs/decisions.md 4n)."""
    ws, _ = prepped
    fitted = json.loads((ws.root / "prep" / "body.json").read_text())["params"]["pose"]
    truth = json.loads((subject / "gt" / "camera.json").read_text())["body"]["pose"]
    bones = ("spine01", "spine03", "spine05")
    pitch = sum(fitted.get(b, [0.0] * 3)[0] for b in bones)
    true_pitch = sum(truth.get(b, [0.0] * 3)[0] for b in bones)
    assert abs(pitch - true_pitch) < 0.25, (pitch, true_pitch)


def test_elbows_bend_only_one_way(prepped):
    """anny's elbows flex about -x; without a hinge, seed 0's raised left arm was fitted with the
    elbow bent backwards and sideways (+0.21, +0.14 rad) and the upper arm swung forward instead."""
    ws, _ = prepped
    pose = json.loads((ws.root / "prep" / "body.json").read_text())["params"]["pose"]
    for side in ("L", "R"):
        x, y, z = pose.get(f"lowerarm01.{side}", [0.0, 0.0, 0.0])
        assert x <= 0.05 and abs(y) <= 0.05 and abs(z) <= 0.05, (side, x, y, z)


def _prepped_subject(tmp_path_factory, anny_body, seed: int, pose: str | None = None):
    """A synthetic subject (``humanref synth``'s seed, and pose style when given) prepped with the
    ``cpu`` preset: ``(workspace, subject directory)``."""
    from humanref_cli.stages.prep import run_prep
    from humanref_cli.synth.subject import make_subject

    subject = tmp_path_factory.mktemp(f"s{seed}")
    make_subject(subject, seed=seed, res=512, body=anny_body, pose=pose)
    ws = Workspace(subject / "ws")
    run_prep(ws, subject / "image.png", preset("cpu"), _rt())
    return ws, subject


@pytest.fixture(scope="module")
def walking(tmp_path_factory, anny_body):
    """Synthetic subject seed 1, prepped: a stride with the left leg back."""
    return _prepped_subject(tmp_path_factory, anny_body, seed=1)


def _thigh_and_shin_depth_differences(body_json, anny_body) -> tuple[float, float]:
    """``x_left - x_right`` of the thighs' and the shins' unit directions (x towards the camera)."""
    import torch

    from humanref_cli.geometry.anny_body import BodyParams, forward_params
    from humanref_cli.perception.depth_calibration import segment_depth
    from humanref_cli.perception.landmark_offsets import detector_landmarks, detector_offsets
    from humanref_cli.perception.shading_cue import PAIR_SEGMENTS

    with torch.no_grad():
        out = forward_params(anny_body, BodyParams.from_dict(body_json["params"]))
        x = segment_depth(detector_landmarks(out, detector_offsets(anny_body.dtype)))
    thighs, shins = (x[PAIR_SEGMENTS[:, 0]] - x[PAIR_SEGMENTS[:, 1]]).tolist()
    return thighs, shins


def test_a_stride_is_fitted_with_the_back_leg_behind(walking, anny_body):
    """Seed 1 strides with the left leg back (thighs -0.48, shins -0.78 in the truth). The front view
    barely shows it; the legs' shading does. Without the shading term the fit put the left thigh
    level with the right one and the shins half as far apart (+0.03, -0.32)."""
    ws, _ = walking
    thighs, shins = _thigh_and_shin_depth_differences(
        json.loads((ws.root / "prep" / "body.json").read_text()), anny_body
    )
    assert thighs < -0.25 and shins < -0.4, (thighs, shins)


@pytest.fixture(scope="module")
def bent(tmp_path_factory, anny_body):
    """Synthetic subject seed 0 posed ``elbows_bent`` (elbows 1.64 and 1.60 rad, the upper arms turned in
    -0.71 and +1.20 rad about anny's z, so the forearms come forward across the body), prepped."""
    return _prepped_subject(tmp_path_factory, anny_body, seed=0, pose="elbows_bent")


def test_bent_elbows_are_fitted_with_the_forearms_across_the_body(bent):
    """From straight arms alone the fit turned seed 0's upper arms in only -0.26 and +0.65 rad and swung
    the arms forward instead (1.33 cm from the true body); starting each arm bent too and keeping the
    start the keypoints fit best turns them -0.65 and +0.98 (0.84 cm; docs/decisions.md 4ac)."""
    from humanref_cli.eval.body_fit import body_fit_error

    ws, subject = bent
    fitted = json.loads((ws.root / "prep" / "body.json").read_text())["params"]["pose"]
    truth = json.loads((subject / "gt" / "camera.json").read_text())["body"]["pose"]
    for side in ("L", "R"):
        twist, true_twist = fitted[f"upperarm01.{side}"][2], truth[f"upperarm01.{side}"][2]
        assert abs(twist - true_twist) < 0.3, (side, twist, true_twist)
        assert -fitted[f"lowerarm01.{side}"][0] > 1.0  # bent
    assert body_fit_error(ws.root / "prep", subject)["chamfer_cm"] <= 1.1


@pytest.fixture(scope="module")
def forward(tmp_path_factory, anny_body):
    """Synthetic subject seed 43, prepped: both arms held forward (drawn style ``arms_forward``)."""
    return _prepped_subject(tmp_path_factory, anny_body, seed=43)


def test_arms_held_forward_are_fitted_forward(forward):
    """Seed 43's arms are held forward (upper arms 1.17 and 1.00 rad), the elbows bent 0.6 rad. Its start
    with both arms bent ends the keypoint phase with a lower loss than rest (a bent elbow holds less
    rotation than a raised arm) but fits the keypoints worse; taken on, the full fit kept the upper arms
    turned in and was 2.7 cm from the true body (decision 4ac). From rest the fit lifts the arms only
    about 0.4 rad (1.57 cm, 4ad). mediapipe points the forearms at the camera, so both arms also start
    raised forward, and that start goes on: 0.58 cm (4ae)."""
    from humanref_cli.eval.body_fit import body_fit_error

    ws, subject = forward
    fitted = json.loads((ws.root / "prep" / "body.json").read_text())["params"]["pose"]
    for side in ("L", "R"):
        assert fitted[f"upperarm01.{side}"][0] < -0.7, (side, fitted[f"upperarm01.{side}"])
    assert body_fit_error(ws.root / "prep", subject)["chamfer_cm"] <= 1.2


@pytest.fixture(scope="module")
def forward_keypoints_worse(tmp_path_factory, anny_body):
    """Synthetic subject seed 39, prepped: arms held forward (upper arms 0.85 and 0.92 rad)."""
    return _prepped_subject(tmp_path_factory, anny_body, seed=39)


def test_the_forward_start_goes_on_though_it_fits_the_keypoints_a_little_worse(forward_keypoints_worse):
    """Seed 39's forward start ends the keypoint phase with a lower loss than the straight one but a
    keypoint term 0.07 higher; held to the bent starts' keypoint condition (4ae) the fit went on from rest
    and lifted the arms 0.13 and 0.30 rad (1.87 cm from the true body). It goes on now (4af): 0.71 and
    0.87 rad, 1.3-1.4 cm (one thread or two)."""
    from humanref_cli.eval.body_fit import body_fit_error

    ws, subject = forward_keypoints_worse
    fitted = json.loads((ws.root / "prep" / "body.json").read_text())["params"]["pose"]
    for side in ("L", "R"):
        assert fitted[f"upperarm01.{side}"][0] < -0.6, (side, fitted[f"upperarm01.{side}"])
    assert body_fit_error(ws.root / "prep", subject)["chamfer_cm"] <= 1.5


@pytest.mark.slow
def test_body_fit_is_close_to_the_ground_truth_body(prepped, subject):
    from humanref_cli.eval.body_fit import body_fit_error

    ws, _ = prepped
    metrics = body_fit_error(ws.root / "prep", subject)
    print("body fit vs ground truth:", metrics)
    # Seed 0 fits at 1.02 cm on an Intel Xeon and 1.13 on an AMD EPYC (mediapipe's and torch's kernels
    # move the keypoints and the fit a little); over 48 subjects 31 are within the goal (decision 4q).
    assert metrics["chamfer_cm"] <= 1.5, metrics


def test_regions_agree_with_ground_truth_parsing(prepped, subject):
    from humanref_cli.perception.crop import Crop, uncrop_array

    ws, _ = prepped
    cam = json.loads((ws.root / "prep" / "camera.json").read_text())
    x0, y0, x1, _ = (int(round(v)) for v in cam["crop_box_photo"])
    crop = Crop(x0, y0, x1 - x0, cam["res"])
    parsing = np.asarray(Image.open(ws.root / "prep" / "parsing.png"))
    ours = uncrop_array(parsing, crop, (512, 512), nearest=True)
    gt = np.asarray(Image.open(subject / "gt" / "parsing.png"))
    fg = (gt > 0) & (ours > 0)
    agreement = float((ours[fg] == gt[fg]).mean())
    print("parsing agreement on foreground:", agreement)
    assert agreement >= 0.90
    regions = json.loads((ws.root / "prep" / "regions.json").read_text())
    assert regions["size"] == [512, 512] and set(regions["parts"]) == {
        "head",
        "face",
        "upper",
        "lower",
        "feet",
    }
    parts = regions["parts"]
    assert parts["head"]["box"][1] < parts["lower"]["box"][1] < parts["feet"]["box"][1]
    assert parts["upper"]["box"][1] < parts["lower"]["box"][1]


def test_fresh_stage_is_skipped_and_options_make_it_stale(prepped, subject):
    from humanref_cli.stages.prep import PrepKey, available_models, run_prep

    ws, _ = prepped
    again = run_prep(ws, subject / "image.png", preset("cpu"), _rt())
    assert again["up_to_date"] is True
    cfg = preset("cpu")
    models = {"keypoints": "embedded:mediapipe-pose-0.10.21", "body": "embedded:anny-0.6.2"}
    assert available_models(cfg, None, None) == {}
    key = ws.stage_key("prep", PrepKey(cfg, None, False, "a knight"), [subject / "image.png"], models)
    assert not ws.is_fresh("prep", key)


def test_alpha_path_and_user_prompt(tmp_path, subject):
    from dataclasses import replace

    from humanref_cli.stages.prep import run_prep

    ws = Workspace(tmp_path / "ws")
    cfg = replace(PrepConfig(res=256), **QUICK_FIT)
    result = run_prep(ws, subject / "image_rgba.png", cfg, _rt(), prompt="a person in a purple shirt")
    assert result["mask_source"] == "alpha" and result["mask_eroded_px"] == 0
    assert result["prompt_source"] == "user"
    assert (ws.root / "prep" / "prompt.txt").read_text().startswith("a person in a purple shirt\n")
    assert np.asarray(Image.open(ws.root / "prep" / "mask.png")).shape == (256, 256)


def test_the_shading_term_is_used_by_default_and_off_at_weight_zero(tmp_path, prepped, subject):
    from dataclasses import replace

    from humanref_cli.stages.prep import run_prep

    ws, _ = prepped
    assert "shading" in json.loads((ws.root / "prep" / "body.json").read_text())["fit"]["losses"]
    off = Workspace(tmp_path / "ws")
    run_prep(off, subject / "image.png", replace(PrepConfig(res=256), **QUICK_FIT, fit_w_shade=0.0), _rt())
    assert "shading" not in json.loads((off.root / "prep" / "body.json").read_text())["fit"]["losses"]


def test_a_negative_shading_weight_is_a_usage_error():
    from humanref_cli.errors import UsageError

    with pytest.raises(UsageError, match="fit_w_shade must be >= 0"):
        PrepConfig(fit_w_shade=-1.0)


def test_tiny_sam_and_segformer_through_the_stage(tmp_path, subject):
    from dataclasses import replace

    from humanref_cli.stages.prep import run_prep
    from humanref_cli.testing.tiny_perception import make_tiny_sam, make_tiny_segformer

    models = tmp_path / "models"
    make_tiny_sam(models / "sam")
    make_tiny_segformer(models / "segformer_parser")
    ws = Workspace(tmp_path / "ws")
    cfg = replace(PrepConfig(res=256), **QUICK_FIT)
    result = run_prep(ws, subject / "image.png", cfg, _rt(), models_dir=models)
    rec = ws.record("prep")
    assert "sam" in rec["models"] and "segformer_parser" in rec["models"]
    # a random SAM disagrees with mediapipe and is rejected, loudly; a random parser still runs
    assert result["mask_source"] in ("sam", "mediapipe (sam rejected)")
    assert result["parsing_source"] == "segformer"
    assert result["models_used"]["parsing"] == rec["models"]["segformer_parser"]
    regions = json.loads((ws.root / "prep" / "regions.json").read_text())
    assert regions["source"] == "segformer"


def test_the_fit_keeps_the_age_phenotype_above_its_bound(prepped, anny_body):
    """``prep.fit_min_age`` bounds anny's age from below (decision 4t): a bound above the subject's
    age is where the fit ends; without a bound a short fit stays near the rest body's 0.5."""
    from humanref_cli.perception.bodyfit import FitSettings, fit_body

    ws, _ = prepped
    prep = ws.root / "prep"
    marks = json.loads((prep / "keypoints.json").read_text())["landmarks"]
    kp = np.array([[m["u"], m["v"]] for m in marks])
    vis = np.array([m["visibility"] for m in marks])
    mask = np.asarray(Image.open(prep / "mask.png")) > 127
    ages = {}
    for bound in (0.0, 0.9):
        settings = FitSettings(steps_keypoints=5, steps_full=10, w_shade=0.0, min_age=bound)
        ages[bound] = fit_body(anny_body, kp, vis, mask, settings).params.phenotype["age"]
    assert ages[0.9] == pytest.approx(0.9) and ages[0.0] < 0.8, ages
