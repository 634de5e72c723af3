"""mediapipe's heavy pose model: put where mediapipe loads it, verified, with a fallback to the full one."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from humanref_cli.configs.prep import PrepConfig
from humanref_cli.perception import pose_heavy
from humanref_cli.perception.person import Person, _seen_before
from humanref_cli.runtime import Runtime


def _file(path, data: bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def test_install_copies_the_locked_file_once(tmp_path):
    sha = _file(tmp_path / "pulled" / pose_heavy.FILE_NAME, b"heavy model bytes")
    target = tmp_path / "mediapipe" / pose_heavy.FILE_NAME
    target.parent.mkdir()
    assert not pose_heavy.installed(sha, target)
    assert pose_heavy.install(tmp_path / "pulled" / pose_heavy.FILE_NAME, sha, target) == target
    assert target.read_bytes() == b"heavy model bytes" and pose_heavy.installed(sha, target)
    inode = target.stat().st_ino
    pose_heavy.install(tmp_path / "pulled" / pose_heavy.FILE_NAME, sha, target)
    assert target.stat().st_ino == inode  # the same file: not copied again
    assert sorted(p.name for p in target.parent.iterdir()) == [pose_heavy.FILE_NAME]


def test_a_file_that_is_not_the_locked_one_is_not_installed(tmp_path):
    _file(tmp_path / "pulled" / pose_heavy.FILE_NAME, b"truncated")
    target = tmp_path / "mediapipe" / pose_heavy.FILE_NAME
    target.parent.mkdir()
    with pytest.raises(ValueError, match="not the locked file"):
        pose_heavy.install(tmp_path / "pulled" / pose_heavy.FILE_NAME, "0" * 64, target)
    assert list(target.parent.iterdir()) == []  # nothing half-written left behind


def test_prep_falls_back_to_the_full_model_and_says_why(tmp_path, monkeypatch, capsys):
    from humanref_cli.stages.prep import pose_model

    monkeypatch.setattr(pose_heavy, "package_path", lambda: tmp_path / "mediapipe" / pose_heavy.FILE_NAME)
    (tmp_path / "mediapipe").mkdir()
    _file(tmp_path / "models" / "pose_heavy" / pose_heavy.FILE_NAME, b"not the model")
    found = {"pose_heavy": tmp_path / "models" / "pose_heavy", "sam": tmp_path / "sam"}
    rt = Runtime(device_name="cpu", quiet=True)
    cfg = PrepConfig(use_pose_heavy=True)
    assert pose_model(cfg, found, rt) == "full"
    assert "pose_heavy" not in found and "sam" in found  # the manifest does not claim it
    said = " ".join("".join(capsys.readouterr()).split())  # the console wraps long lines
    assert "using the bundled full model" in said and "models pull pose_heavy --force" in said, said
    assert pose_model(cfg, {}, rt) == "full"
    said = " ".join("".join(capsys.readouterr()).split())
    assert "pose_heavy is not pulled (humanref models pull pose_heavy)" in said, said
    assert pose_model(PrepConfig(), {}, rt) == "full" and not "".join(capsys.readouterr())  # not asked for


def _person(box, mask) -> Person:
    return Person(np.zeros((33, 2)), np.ones(33), np.zeros(33), None, mask, box)


def test_a_person_seen_in_the_paint_is_not_someone_new():
    """The heavy model finds a faint upper body where a found person was painted out (synthetic seed 1)."""
    painted = np.zeros((100, 200), bool)
    painted[10:90, 20:80] = True
    first = _person((20, 10, 80, 90), painted.astype(np.float32))
    ghost_mask = np.zeros((100, 200), np.float32)
    ghost_mask[12:50, 25:70] = 1.0
    ghost = _person((25, 12, 70, 50), ghost_mask)  # inside the first box, IoU 0.36
    assert _seen_before(ghost, [first], painted)
    beside_mask = np.zeros((100, 200), np.float32)
    beside_mask[10:90, 70:140] = 1.0  # overlaps the paint by a seventh
    beside = _person((70, 10, 140, 90), beside_mask)
    assert not _seen_before(beside, [first], painted)
    assert _seen_before(_person((22, 10, 82, 90), None), [first], painted)  # the same box again
    assert not _seen_before(ghost, [], np.zeros((100, 200), bool))


def test_heavy_detection_where_installed(subject):
    """Runs the real heavy model when it is in mediapipe's package (``models pull pose_heavy`` and a
    prep, or ``bench/calibrate_landmarks.py --pose heavy``); CI has only the bundled full model."""
    from PIL import Image

    from humanref_cli.perception.person import detect_people

    if not pose_heavy.installed(pose_heavy.locked_sha256()):
        pytest.skip("mediapipe's heavy pose model is not installed here")
    rgb = np.asarray(Image.open(subject / "image.png").convert("RGB"))
    full, heavy = detect_people(rgb, 2, "full"), detect_people(rgb, 2, "heavy")
    assert len(full) == len(heavy) == 1
    near = np.linalg.norm(full[0].keypoints - heavy[0].keypoints, axis=1)[11:29]  # shoulders to ankles
    assert np.median(near) < 8.0 and not np.allclose(full[0].keypoints, heavy[0].keypoints)
