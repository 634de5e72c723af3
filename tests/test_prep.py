"""Prep pieces: photo loading and rejection, people, silhouettes, crop, regions, models, prompt."""

from __future__ import annotations

import dataclasses
import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from humanref_cli.errors import UsageError
from humanref_cli.perception.crop import crop_array, square_crop, uncrop_array
from humanref_cli.perception.image import load_image
from humanref_cli.perception.parsing import regions_from_lip
from humanref_cli.perception.person import ANKLES, Person, legs_visible, on_mask, select_person
from humanref_cli.perception.silhouette import erode, finish_crop_mask, largest_component, mask_iou


def _cli(args):
    from humanref_cli.cli import app

    return CliRunner().invoke(app, args)


# ----------------------------------------------------------------------------- image loading
def test_modes_are_converted(tmp_path):
    gray16 = np.array([[0, 32768, 65535, 1000]] * 40, np.uint16).repeat(10, axis=1)
    Image.fromarray(gray16).save(tmp_path / "g16.png")
    loaded = load_image(tmp_path / "g16.png")
    assert loaded.rgb.dtype == np.uint8 and loaded.rgb.shape == (40, 40, 3)
    assert loaded.rgb[0, 0, 0] == 0 and loaded.rgb[0, 15, 0] == 128 and loaded.rgb[0, 25, 1] == 255

    Image.new("L", (40, 50), 77).save(tmp_path / "gray.png")
    assert (load_image(tmp_path / "gray.png").rgb == 77).all()

    pal = Image.new("P", (40, 40))
    pal.putpalette([10, 20, 30] + [0] * 765)
    pal.save(tmp_path / "pal.png")
    assert tuple(load_image(tmp_path / "pal.png").rgb[5, 5]) == (10, 20, 30)

    Image.new("CMYK", (40, 40), (255, 0, 0, 0)).save(tmp_path / "cmyk.jpg")  # pure cyan
    r, g, b = load_image(tmp_path / "cmyk.jpg").rgb[20, 20].astype(int)
    assert r < 20 and g > 235 and b > 235


def test_alpha_is_kept_only_when_it_cuts_out(tmp_path):
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., 3] = 255
    Image.fromarray(rgba).save(tmp_path / "opaque.png")
    assert load_image(tmp_path / "opaque.png").alpha is None
    rgba[:20, :, 3] = 0
    Image.fromarray(rgba).save(tmp_path / "cut.png")
    alpha = load_image(tmp_path / "cut.png").alpha
    assert alpha is not None and alpha[:20].max() == 0 and alpha[20:].min() == 1


def test_exif_orientation_and_unicode_path(tmp_path):
    img = Image.new("RGB", (60, 40), (200, 10, 10))
    img.paste((10, 200, 10), (0, 0, 10, 40))  # a green strip on the left edge
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    path = tmp_path / "föto mit leerzeichen ✓.jpg"
    img.save(path, exif=exif.tobytes(), quality=95)
    loaded = load_image(path)
    assert loaded.exif_rotated and loaded.size == (60, 40)
    assert loaded.rgb[2, 20, 1] > 150  # the left strip is now at the top
    assert loaded.extension == "jpg" and len(loaded.sha256) == 64


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims ``width x height`` pixels but holds almost no data (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def _corrupt_png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (100, 100, 3), np.uint8)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    data[200:400] = b"\xff" * 200  # inside the IDAT stream
    return bytes(data)


def _truncated_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), np.uint8)).save(buf, "JPEG")
    return buf.getvalue()[:3000]


BAD_INPUTS = {
    "empty.png": (b"", "is empty"),
    "notes.jpg": (b"this is a text file, not a photo\n", "not an image"),
    "truncated.jpg": (_truncated_jpeg(), "corrupt or truncated"),
    "corrupt.png": (_corrupt_png(), "corrupt or truncated"),
    "bomb.png": (_png_header_only(100_000, 100_000), "decompression bomb"),
    "tiny.png": (None, "too small to hold a person"),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_photos_exit_2_with_a_reason(tmp_path, name):
    data, reason = BAD_INPUTS[name]
    path = tmp_path / name
    if data is None:
        Image.new("RGB", (16, 16)).save(path)
    else:
        path.write_bytes(data)
    result = _cli(["prep", str(path), str(tmp_path / "ws"), "--preset", "cpu"])
    assert result.exit_code == 2, result.output
    assert reason in result.stderr
    assert not (tmp_path / "ws" / "prep").exists()  # a bad photo never touches the workspace


def test_missing_photo_and_huge_photo_limit(tmp_path):
    result = _cli(["prep", str(tmp_path / "nope.jpg"), str(tmp_path / "ws")])
    assert result.exit_code == 2 and "not found" in result.stderr
    # a folder is not a photo, and a folder or a missing file is not a mask: one line each, no workspace
    (tmp_path / "photos").mkdir()
    result = _cli(["prep", str(tmp_path / "photos"), str(tmp_path / "ws")])
    assert result.exit_code == 2 and "is a folder, not a photo" in result.stderr, result.output
    assert "loop over its photos" in result.stderr
    Image.new("RGB", (64, 64)).save(tmp_path / "photo.png")
    for mask, reason in (
        (tmp_path / "photos", "is a folder, not a mask image"),
        (tmp_path / "m.png", "not found"),
    ):
        result = _cli(["prep", str(tmp_path / "photo.png"), str(tmp_path / "ws"), "--mask", str(mask)])
        assert result.exit_code == 2 and f"--mask {mask} {reason}" in result.stderr, result.output
        assert "Traceback" not in result.output
    assert not (tmp_path / "ws" / "prep").exists()
    Image.new("RGB", (100, 100)).save(tmp_path / "big.png")
    with pytest.raises(UsageError, match="over the 0 MP limit"):
        load_image(tmp_path / "big.png", max_pixels=5000)


# ----------------------------------------------------------------------------- people
def test_no_person_and_partial_body(tmp_path):
    from skimage import data

    Image.new("RGB", (256, 256), (128, 128, 128)).save(tmp_path / "wall.png")
    result = _cli(["prep", str(tmp_path / "wall.png"), str(tmp_path / "ws")])
    assert result.exit_code == 2 and "no person found in wall.png" in result.stderr

    Image.fromarray(data.astronaut()).save(tmp_path / "astronaut.png")
    result = _cli(["prep", str(tmp_path / "astronaut.png"), str(tmp_path / "ws")])
    assert result.exit_code == 2 and "a full-body photo is needed" in result.stderr
    assert "--allow-partial" in result.stderr


def _fake_person(height: float, legs_visible: bool = True) -> Person:
    kp = np.tile([[100.0, 100.0]], (33, 1))
    kp[:, 1] = np.linspace(10, 10 + height, 33)
    vis = np.ones(33, np.float32)
    if not legs_visible:
        vis[25:29] = 0.1
    return Person(kp, vis, np.zeros(33), None, None, (90.0, 10.0, 110.0, 10.0 + height))


def test_person_selection_rules():
    people = [_fake_person(400), _fake_person(300)]
    chosen, warnings = select_person(people, "p.jpg", (1000, 1000))
    assert chosen is people[0] and "2 people found" in warnings[0] and "--person 1" in warnings[0]
    assert select_person(people, "p.jpg", (1000, 1000), index=1)[0] is people[1]
    with pytest.raises(UsageError, match="out of range"):
        select_person(people, "p.jpg", (1000, 1000), index=2)
    with pytest.raises(UsageError, match="too small"):
        select_person([_fake_person(60)], "p.jpg", (1000, 1000), min_height_px=128)
    with pytest.raises(UsageError, match="full-body"):
        select_person([_fake_person(400, legs_visible=False)], "p.jpg", (1000, 1000))
    _, warnings = select_person([_fake_person(400, False)], "p.jpg", (1000, 1000), allow_partial=True)
    assert "partial" in warnings[0]


def test_legs_guessed_off_the_persons_mask_are_not_seen():
    """basketball2.png's nearer man, cut off at the hips: mediapipe puts a confident ankle below him,
    off its own mask (2% of his height). Legs on the mask, or within 1% of the height of it, count."""
    person = _fake_person(400)  # keypoints down the column u = 100, v = 10..410
    mask = np.zeros((1000, 1000), np.float32)
    mask[10:411, 95:106] = 1.0
    on = dataclasses.replace(person, mask=mask)
    assert legs_visible(on, (1000, 1000))
    cut = mask.copy()
    cut[340:] = 0.0  # the knee at v = 335 on the mask, the ankles at v = 347.5 and 360 8 and 20 px below
    gone = dataclasses.replace(person, mask=cut)
    assert on_mask(person.keypoints, cut, 4.0)[[26, *ANKLES]].tolist() == [True, False, False]
    assert not legs_visible(gone, (1000, 1000))
    near = mask.copy()
    near[345:] = 0.0  # the ankle at v = 347.5 now 3 px off the mask: within 1% of 400 px
    assert legs_visible(dataclasses.replace(person, mask=near), (1000, 1000))
    small = _fake_person(40)  # 1% of 40 px is 0.4 px: a landmark on a mask pixel's corner still counts
    tiny_mask = np.zeros((1000, 1000), np.float32)
    tiny_mask[10:51, 100] = 1.0  # the column of pixels whose left edges the landmarks (u = 100) sit on
    assert legs_visible(dataclasses.replace(small, mask=tiny_mask), (1000, 1000))

    with pytest.raises(UsageError, match="full-body") as err:
        select_person([gone, on], "p.jpg", (1000, 1000))
    assert "--person 1 (seen head to toe)" in err.value.hint
    with pytest.raises(UsageError) as err:
        select_person([gone], "p.jpg", (1000, 1000))
    assert "--person" not in err.value.hint


def test_two_people_largest_first(subject):
    import cv2

    from humanref_cli.perception.person import detect_people

    person = np.asarray(Image.open(subject / "image.png").convert("RGB"))
    small = cv2.resize(person, (384, 384), interpolation=cv2.INTER_AREA)
    canvas = np.full((512, 1024, 3), person[0, 0], np.uint8)
    canvas[:, 480:992] = person
    canvas[64:448, 40:424] = small
    people = detect_people(canvas, max_people=3)
    assert len(people) == 2
    assert people[0].height > people[1].height
    assert people[0].box[0] >= 470 and people[1].box[2] <= 430


def test_too_small_person_through_the_cli(subject, tmp_path):
    result = _cli(["prep", str(subject / "image.png"), str(tmp_path / "ws"), "--set", "min_person_px=2000"])
    assert result.exit_code == 2 and "too small" in result.stderr


# ----------------------------------------------------------------------------- silhouette and crop
def test_largest_component_keeps_holes_and_erodes():
    m = np.zeros((40, 40), bool)
    m[5:30, 5:30] = True
    m[10:15, 10:15] = False  # a hole
    m[12, 12] = True  # an island in the hole
    m[35:38, 35:38] = True  # a smaller blob
    big = largest_component(m)
    assert not big[12, 12] and not big[36, 36] and big[5, 5] and not big[11, 11]
    assert erode(np.pad(np.ones((5, 5), bool), 2), 1).sum() == 9


def test_square_crop_and_its_inverse():
    crop = square_crop((100.0, 50.0, 200.0, 410.0), res=256, box_scale=0.9)
    assert crop.side == 400 and abs(crop.x0 + crop.side / 2 - 150) <= 1 and abs(crop.y0 + 200 - 230) <= 1
    pts = np.array([[100.0, 50.0], [200.0, 410.0]])
    back = (crop.crop_to_photo_matrix() @ np.c_[crop.to_crop(pts), np.ones(2)].T).T[:, :2]
    np.testing.assert_allclose(back, pts, atol=1e-9)
    cam = crop.camera_json((600, 300), False)
    np.testing.assert_allclose(
        np.array(cam["photo_to_crop"]) @ np.array(cam["crop_to_photo"]), np.eye(3), atol=1e-9
    )
    # outside the photo the crop is filled; the box covers 90% of the side
    img = np.zeros((600, 300), np.uint8)
    img[50:410, 100:200] = 255
    out = crop_array(img, crop, fill=7)
    rows = np.nonzero(out.max(axis=1) > 128)[0]
    assert abs((rows[-1] - rows[0] + 1) / 256 - 0.9) < 0.01
    assert out[0, 0] == 7 or out[0, -1] == 7


def test_crop_mask_round_trip_is_nearly_lossless():
    yy, xx = np.mgrid[:300, :400]
    disk = (xx - 210) ** 2 / 60**2 + (yy - 150) ** 2 / 120**2 < 1
    crop = square_crop((150, 30, 270, 270), res=128)
    m = finish_crop_mask(crop_array(disk.astype(np.float32), crop, out_size=256), 128, erode_px=0)
    assert mask_iou(uncrop_array(m, crop, disk.shape), disk) > 0.97
    # unbiased at the crop's size (267 px -> 256 and 300): thresholding the 2x mask before the area
    # resize lost about 0.5% of the area (IoU 0.995) at both
    for res in (256, 300):
        crop = square_crop((150, 30, 270, 270), res=res)
        m = finish_crop_mask(crop_array(disk.astype(np.float32), crop, out_size=2 * res), res, erode_px=0)
        assert abs(m.sum() * crop.scale**2 / disk.sum() - 1) < 0.002
        assert mask_iou(uncrop_array(m, crop, disk.shape), disk) > 0.998
    eroded = finish_crop_mask(crop_array(disk.astype(np.float32), crop, out_size=256), 128, erode_px=1)
    assert eroded.sum() < m.sum()


def test_mask_file_must_match_the_photo(tmp_path):
    from humanref_cli.perception.silhouette import mask_from_file

    Image.new("L", (60, 40), 255).save(tmp_path / "m.png")
    with pytest.raises(UsageError, match="but the photo is 60x80"):
        mask_from_file(tmp_path / "m.png", (80, 60), 10**8)
    assert mask_from_file(tmp_path / "m.png", (40, 60), 10**8).all()
    Image.new("L", (60, 40), 0).save(tmp_path / "empty.png")
    with pytest.raises(UsageError, match="empty"):
        mask_from_file(tmp_path / "empty.png", (40, 60), 10**8)


def _photo_frame_mask_iou(subject: Path, name: str, **settings) -> float:
    """The stage's silhouette path (source, crop at 2 res, finish) mapped back onto the photo vs gt."""
    from humanref_cli.configs.prep import PrepConfig
    from humanref_cli.perception.silhouette import bbox
    from humanref_cli.runtime import Runtime
    from humanref_cli.stages.prep import _load_and_find_person, _silhouette

    cfg = PrepConfig(**settings)
    rt = Runtime(device_name="cpu", quiet=True)
    photo = _load_and_find_person(subject / name, cfg, rt, None, False)
    sil, source = _silhouette(photo, cfg, rt, None, {})
    crop = square_crop(bbox(sil), cfg.res, cfg.box_scale)
    erode_px = cfg.erode_px if source == "sam" else 0
    mask = finish_crop_mask(crop_array(sil.astype(np.float32), crop, out_size=2 * cfg.res), cfg.res, erode_px)
    gt = np.asarray(Image.open(subject / "gt" / "mask.png")) > 127
    return source, mask_iou(uncrop_array(mask, crop, gt.shape), gt)


def test_mask_iou_alpha_and_mediapipe(subject):
    source, iou = _photo_frame_mask_iou(subject, "image_rgba.png")
    assert source == "alpha" and iou >= 0.98, iou
    source, iou = _photo_frame_mask_iou(subject, "image.png")
    assert source == "mediapipe" and iou >= 0.98, iou
    # the guided filter is what lifts mediapipe's mask from ~0.97 (decision 4m)
    _, raw = _photo_frame_mask_iou(subject, "image.png", mask_refine=False)
    assert 0.95 <= raw < iou - 0.005, (raw, iou)


# ----------------------------------------------------------------------------- regions
def test_regions_boxes_bands_and_coat_rule():
    lip = np.zeros((512, 512), np.uint8)
    lip[40:100, 200:260] = 13  # face
    lip[30:40, 200:260] = 2  # hair
    lip[110:250, 150:350] = 5  # upper clothes
    lip[260:400, 180:320] = 9  # pants
    lip[400:480, 180:320] = 18  # shoes
    mask = lip > 0
    regions = regions_from_lip(lip, mask, "test")
    parts = regions["parts"]
    assert regions["size"] == [512, 512] and regions["source"] == "test"
    assert parts["head"]["box"] == [190, 22, 270, 115]  # x ±10, 8 above, 15 below
    assert parts["face"]["box"] == [160, 5, 300, 110]  # x ±40, 35 above, 10 below
    assert parts["upper"]["box"] == [140, 102, 360, 258] and parts["upper"]["band"] == [102, 258]
    assert parts["feet"]["box"][3] == 488
    assert set(parts) == {"head", "face", "upper", "lower", "feet"}
    # labels outside the silhouette do not count; a missing part is omitted
    no_feet = regions_from_lip(lip, mask & (lip != 18), "test")["parts"]
    assert "feet" not in no_feet
    # coat: upper-clothes in the coat's rows leave the upper region (lining), the coat stays
    coat = lip.copy()
    coat[110:200, 150:350] = 7
    coat[110:200, 240:260] = 5  # lining visible between the coat's sides
    coat[200:250, 150:350] = 5  # a shirt below the coat
    upper = regions_from_lip(coat, coat > 0, "test")["parts"]["upper"]["box"]
    assert upper == [140, 102, 360, 258]
    only_lining = np.zeros_like(lip)
    only_lining[110:200, 150:350] = 7
    only_lining[150:160, 240:260] = 5
    only_lining[300:310, 240:260] = 5
    # lining inside the coat's rows goes, a shirt below them stays: the box ends 8 px under the shirt
    assert regions_from_lip(only_lining, only_lining > 0, "t")["parts"]["upper"]["box"][3] == 310 + 8


def test_trousers_follow_their_colour():
    from humanref_cli.perception.parsing import refine_legs_by_colour

    groups = np.zeros((100, 40), np.uint8)
    groups[10:40, 10:30] = 2  # torso (upper)
    groups[40:70, 10:30] = 3  # thighs (lower)
    groups[70:100, 10:30] = 4  # shins and feet
    rgb = np.full((100, 40, 3), 255, np.uint8)
    rgb[10:35, 10:30] = (200, 40, 40)  # red shirt down to row 35
    rgb[35:90, 10:30] = (30, 30, 120)  # blue trousers from row 35 to 90
    rgb[90:100, 10:30] = (20, 20, 20)  # black shoes
    out = refine_legs_by_colour(groups, rgb)
    assert (out[35:90, 10:30] == 3).all()  # trousers: lower, from the waist to the shoes
    assert (out[10:35, 10:30] == 2).all() and (out[90:, 10:30] == 4).all()
    assert (out[:, :10] == 0).all()


def test_regions_padding_scales_with_resolution():
    lip = np.zeros((256, 256), np.uint8)
    lip[50:100, 100:150] = 9
    box = regions_from_lip(lip, lip > 0, "t")["parts"]["lower"]["box"]
    assert box == [95, 46, 155, 104]  # 10 -> 5 px, 8 -> 4 px at 256


def test_segformer_labels_map_to_lip_groups():
    from humanref_cli.perception.parsing import groups_from_lip
    from humanref_cli.perception.segformer import label_table
    from humanref_cli.testing.tiny_perception import ATR_LABELS

    table, unmapped = label_table(dict(enumerate(ATR_LABELS)))
    assert sorted(unmapped) == ["Bag", "Belt"]
    groups = groups_from_lip(table)
    names = dict(zip(ATR_LABELS, groups, strict=True))
    assert names["Hair"] == names["Face"] == names["Hat"] == 1
    assert names["Upper-clothes"] == names["Left-arm"] == names["Dress"] == 2
    assert names["Pants"] == names["Skirt"] == 3
    assert names["Left-shoe"] == names["Right-leg"] == 4
    assert names["Background"] == names["Bag"] == 0


# ------------------------------------------------------------------- tiny models, real loaders
def test_tiny_sam_and_segformer_load_through_the_store(tmp_path):
    from humanref_cli.models.store import find_model
    from humanref_cli.perception.sam import load_sam, sam_mask
    from humanref_cli.perception.segformer import load_parser, parse_lip
    from humanref_cli.testing.tiny_perception import make_tiny_sam, make_tiny_segformer

    make_tiny_sam(tmp_path / "sam")
    make_tiny_segformer(tmp_path / "segformer_parser")
    sam_dir = find_model("sam", tmp_path)
    seg_dir = find_model("segformer_parser", tmp_path)
    assert sam_dir == tmp_path / "sam" and seg_dir == tmp_path / "segformer_parser"

    rgb = np.random.default_rng(0).integers(0, 255, (120, 90, 3), np.uint8)
    sam = load_sam(sam_dir)
    assert sam.image_encoder.img_size == 64
    mask, score = sam_mask(sam, rgb, (10, 10, 80, 110), np.array([[45.0, 60.0]]))
    assert mask.shape == (120, 90) and mask.dtype == bool and np.isfinite(score)

    model, processor = load_parser(seg_dir)
    lip = parse_lip(model, processor, rgb)
    assert lip.shape == (120, 90) and set(np.unique(lip)) <= set(range(20))
    assert not np.isin(np.unique(lip), [3, 7, 8, 10]).any()  # no ATR label maps to glove/coat/socks/jumpsuit


def test_sam_checkpoint_errors(tmp_path):
    from humanref_cli.errors import MissingModel
    from humanref_cli.perception.sam import sam_architecture

    (tmp_path / "x").mkdir()
    with pytest.raises(MissingModel, match="one SAM checkpoint"):
        sam_architecture(tmp_path / "x")
    (tmp_path / "x" / "weights.pth").write_bytes(b"")
    with pytest.raises(MissingModel, match="model type"):
        sam_architecture(tmp_path / "x")
    (tmp_path / "x" / "sam_config.json").write_text(json.dumps({"model_type": "vit_b"}))
    assert sam_architecture(tmp_path / "x")[1]["encoder_embed_dim"] == 768


# ----------------------------------------------------------------------------- prompt and normals frame
def test_prompt_sources():
    from humanref_cli.perception.prompt import make_prompt

    assert make_prompt("  a knight  ", "ignored").text == "a knight"
    p = make_prompt(None, "there is a man in a close up with white background")
    assert p.source == "blip" and p.text == "a man in a photo with ground, high quality"
    d = make_prompt(None, None)
    assert d.text == "a photo of a person" and d.negative.startswith("worst quality")
    assert d.to_text().splitlines() == [d.text, d.negative]


def test_marigold_frame_conversion():
    from humanref_cli.perception.normals import marigold_to_world

    towards_viewer = np.array([[[0.0, 0.0, 1.0]]])
    right = np.array([[[1.0, 0.0, 0.0]]])
    up = np.array([[[0.0, 1.0, 0.0]]])
    np.testing.assert_allclose(
        marigold_to_world(towards_viewer)[0, 0], [1, 0, 0]
    )  # world +x: towards the camera
    np.testing.assert_allclose(marigold_to_world(right)[0, 0], [0, 1, 0])  # image right = world +y
    np.testing.assert_allclose(marigold_to_world(up)[0, 0], [0, 0, 1])


def test_mediapipe_native_log_noise_is_filtered_but_other_stderr_passes(capfd):
    import os

    from humanref_cli.perception.person import _filtered_native_stderr

    with _filtered_native_stderr():
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
        os.write(2, b"W0000 00:00:1795497336.44 11207 feedback.cc:114] Feedback manager requires\n")
        os.write(2, b"a real error from native code\n")
    err = capfd.readouterr().err
    assert "a real error from native code" in err
    assert "XNNPACK" not in err and "Feedback manager" not in err


def test_bad_mask_filter_setting_is_a_usage_error_through_the_cli(tmp_path, subject):
    result = _cli(["prep", str(subject / "image.png"), str(tmp_path / "ws"), "--set", "mask_refine_eps=0"])
    assert result.exit_code == 2
    assert "mask_refine_eps must be > 0" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "ws" / "prep").exists()  # nothing half-written


def test_negative_fit_weight_is_a_usage_error_through_the_cli(tmp_path, subject):
    result = _cli(["prep", str(subject / "image.png"), str(tmp_path / "ws"), "--set", "fit_w_dir=-1"])
    assert result.exit_code == 2
    assert "fit_w_dir must be >= 0" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "ws" / "prep").exists()  # nothing half-written
