"""Export: GLB/OBJ/PLY round trips, orientation, decimation, turntable and contact sheet, the stage."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch
import trimesh

from humanref_cli.configs.texture import ExportConfig
from humanref_cli.errors import UpstreamError, UsageError
from humanref_cli.geometry import formats as fm
from humanref_cli.geometry.mesh_ops import decimate_textured
from humanref_cli.geometry.uv_atlas import unwrap
from humanref_cli.render import bake, turntable
from humanref_cli.runtime import Runtime
from humanref_cli.workspace import Workspace


def color_field(p: torch.Tensor) -> torch.Tensor:
    """Red on the front (+x), blue on the back, green on top: orientation shows in the colours."""
    front = (p[:, 0] > 0).float()
    return torch.stack([0.1 + 0.8 * front, 0.2 + 0.6 * (p[:, 2] > 0.3).float(), 0.9 - 0.8 * front], -1)


@pytest.fixture(scope="module")
def textured() -> fm.TexturedMesh:
    """A textured, upright capsule in the world frame (z up), ~1.6 tall."""
    mesh = trimesh.creation.capsule(height=1.0, radius=0.3, count=[24, 24]).subdivide_to_size(0.1)
    atlas = unwrap(np.asarray(mesh.vertices, np.float32), mesh.faces, texture_size=128, padding=2)
    albedo, _ = bake.bake_texture(atlas.vertices, atlas.faces, atlas.uvs, color_field, size=128, padding=2)
    return fm.TexturedMesh(atlas.vertices, atlas.faces, atlas.uvs, (albedo * 255 + 0.5).astype(np.uint8))


def test_y_up_is_a_rotation_taking_world_up_and_front_to_gltf():
    r = fm.WORLD_TO_Y_UP
    np.testing.assert_allclose(r @ r.T, np.eye(3))
    assert np.isclose(np.linalg.det(r), 1.0)
    np.testing.assert_array_equal(r @ [0, 0, 1], [0, 1, 0])  # world up -> +y
    np.testing.assert_array_equal(r @ [1, 0, 0], [0, 0, 1])  # facing +x -> facing +z


@pytest.mark.parametrize("suffix", ["glb", "obj"])
def test_textured_round_trip(tmp_path, textured, suffix):
    mesh = textured.to_y_up()
    path = tmp_path / f"h.{suffix}"
    fm.write_glb(path, mesh) if suffix == "glb" else fm.write_obj(path, mesh)
    found = fm.check_textured(path, mesh)
    assert found == {"vertices": len(mesh.vertices), "faces": len(mesh.faces), "texture_size": [128, 128]}
    loaded = trimesh.load(path, process=False, force="mesh")
    image = getattr(loaded.visual.material, "baseColorTexture", None) or loaded.visual.material.image
    np.testing.assert_array_equal(np.asarray(image.convert("RGB")), mesh.texture)  # PNG is lossless
    np.testing.assert_allclose(loaded.vertices[:, 1].max(), textured.vertices[:, 2].max(), atol=1e-5)


def test_glb_stores_gltf_uvs_and_normals(tmp_path, textured):
    """glTF's v points down (1 - v of OBJ); check the raw accessor, not trimesh's reading of it."""
    mesh = textured.to_y_up()
    fm.write_glb(tmp_path / "h.glb", mesh)
    data = (tmp_path / "h.glb").read_bytes()
    json_len = struct.unpack("<I", data[12:16])[0]
    gltf = json.loads(data[20 : 20 + json_len])
    binary = data[20 + json_len + 8 :]
    attributes = gltf["meshes"][0]["primitives"][0]["attributes"]

    def accessor(name: str) -> np.ndarray:
        acc = gltf["accessors"][attributes[name]]
        view = gltf["bufferViews"][acc["bufferView"]]
        start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
        width = {"VEC2": 2, "VEC3": 3}[acc["type"]]
        return np.frombuffer(binary, np.float32, acc["count"] * width, start).reshape(-1, width)

    np.testing.assert_allclose(accessor("TEXCOORD_0")[:, 1], 1.0 - mesh.uvs[:, 1], atol=1e-6)
    np.testing.assert_allclose(accessor("POSITION"), mesh.vertices, atol=1e-6)
    normals = accessor("NORMAL")
    outward = np.einsum("ij,ij->i", normals, mesh.vertices - mesh.vertices.mean(0))
    assert (outward > 0).mean() > 0.99  # the rotation kept the winding
    assert gltf["materials"][0]["pbrMetallicRoughness"]["baseColorTexture"]["index"] == 0


def test_ply_round_trip_has_welded_vertices_and_texture_colours(tmp_path, textured):
    mesh = textured.to_y_up()
    fm.write_ply(tmp_path / "h.ply", mesh)
    found = fm.check_ply(tmp_path / "h.ply", mesh)
    unique_positions = len(np.unique(mesh.vertices, axis=0))
    assert found["vertices"] == unique_positions < len(mesh.vertices)
    loaded = trimesh.load(tmp_path / "h.ply", process=False)
    colours = np.asarray(loaded.visual.vertex_colors)[:, :3].astype(float)
    front = loaded.vertices[:, 2] > 0.05  # +z in the file is the world's +x, the front
    back = loaded.vertices[:, 2] < -0.05
    assert colours[front, 0].mean() > 180 and colours[back, 2].mean() > 180


def test_obj_reader_inverts_the_writer(tmp_path, textured):
    fm.write_obj(tmp_path / "m.obj", textured, texture_name="albedo.png")
    assert (tmp_path / "albedo.png").exists() and "map_Kd albedo.png" in (tmp_path / "m.mtl").read_text()
    back = fm.read_obj(tmp_path / "m.obj")
    np.testing.assert_allclose(back.vertices, textured.vertices, atol=1e-6)
    np.testing.assert_allclose(back.uvs, textured.uvs, atol=1e-6)
    np.testing.assert_array_equal(back.faces, textured.faces)
    np.testing.assert_array_equal(back.texture, textured.texture)


def test_check_detects_a_different_mesh(tmp_path, textured):
    fm.write_glb(tmp_path / "h.glb", textured)
    moved = fm.TexturedMesh(textured.vertices + 0.01, textured.faces, textured.uvs, textured.texture)
    with pytest.raises(ValueError):
        fm.check_textured(tmp_path / "h.glb", moved)


def test_decimated_export_is_lighter_and_still_textured(tmp_path, textured):
    v, f, uv = decimate_textured(textured.vertices, textured.faces, textured.uvs, 400)
    assert 300 <= len(f) <= 400
    light = fm.TexturedMesh(v, f, uv, textured.texture)
    fm.write_glb(tmp_path / "light.glb", light)
    assert fm.check_textured(tmp_path / "light.glb", light)["faces"] == len(f)
    colours = bake.sample_texture(textured.texture.astype(np.float32) / 255, uv)
    want = color_field(torch.as_tensor(v)).numpy()
    assert np.mean(np.abs(colours - want).max(axis=1) < 0.1) > 0.9


# ---------------------------------------------------------------------------------- previews
def test_turntable_frame_count_size_and_rotation(tmp_path, textured):
    frames = turntable.turntable_frames(textured, frames=8, size=64, elevation=0.0, supersample=1)
    assert len(frames) == 8 and all(f.shape == (64, 64, 3) and f.dtype == np.uint8 for f in frames)
    centre = [f[28:36, 28:36].reshape(-1, 3).mean(0) for f in frames]
    assert centre[0][0] > 2 * centre[0][2]  # front (red) faces the first frame
    assert centre[4][2] > 2 * centre[4][0]  # back (blue) after half a turn
    assert (frames[0][0, 0] == 255).all()  # white background
    video = turntable.write_video(tmp_path / "turntable.mp4", frames, fps=8)
    import imageio.v3 as iio

    assert video.suffix == ".mp4"
    assert iio.imread(video).shape == (8, 64, 64, 3)
    gif = turntable.write_gif(tmp_path / "turntable.gif", frames, fps=8)
    assert iio.imread(gif).shape == (8, 64, 64, 3)


def test_contact_sheet_layout_and_normals(textured):
    sheet = turntable.contact_sheet(textured, size=48, supersample=1)
    assert sheet.shape == (96, 144, 3)
    front_normal = sheet[48 + 24, 24].astype(float) / 255  # bottom-left tile centre: normal +x
    np.testing.assert_allclose(front_normal, [1.0, 0.5, 0.5], atol=0.08)
    side_normal = sheet[48 + 24, 48 + 24].astype(float) / 255  # azimuth 90: camera on +y
    np.testing.assert_allclose(side_normal, [0.5, 1.0, 0.5], atol=0.08)


# ---------------------------------------------------------------------------------- the stage
def _fake_texture_stage(ws: Workspace, mesh: fm.TexturedMesh, rt: Runtime) -> None:
    """What `humanref texture` leaves behind, through the real Workspace API."""
    with ws.stage("texture", key="k", cfg=None, inputs=[], models={}, steps=0, rt=rt) as run:
        run.add_output(*fm.write_obj(run.dir / "mesh.obj", mesh, texture_name="albedo.png"))


def test_export_stage_writes_checks_and_is_fresh(tmp_path, textured):
    rt = Runtime(device_name="cpu", quiet=True)
    ws = Workspace(tmp_path / "ws")
    from humanref_cli.stages.export import run_export

    with pytest.raises(UpstreamError):
        run_export(ws, ExportConfig(), rt)
    _fake_texture_stage(ws, textured, rt)
    cfg = ExportConfig(turntable_frames=4, turntable_size=64, turntable_fps=4, sheet_size=32)
    out = run_export(ws, cfg, rt, formats=["glb", "obj", "ply"])
    export = ws.root / "export"
    names = {p.name for p in export.iterdir()}
    assert {
        "humanref.glb",
        "humanref.obj",
        "humanref.mtl",
        "humanref.png",
        "humanref.ply",
        "sheet.png",
        "turntable.mp4",
        "metadata.json",
    } <= names
    meta = json.loads((export / "metadata.json").read_text())
    assert meta["export"]["checks"]["glb"]["vertices"] == len(textured.vertices)
    assert meta["export"]["orientation"]["up"] == "+y"
    assert "texture" in meta["timings_s"] and "export/humanref.glb" in meta["export"]["files"]
    assert out["glb"].endswith("humanref.glb")
    assert ws.record("export")["status"] == "done"
    assert run_export(ws, cfg, rt, formats=["glb", "obj", "ply"])["up_to_date"] is True
    # a lighter GLB only: a different key, so it reruns
    run_export(ws, cfg, rt, formats=["glb"], faces=300)
    light = trimesh.load(export / "humanref.glb", force="mesh", process=False)
    assert len(light.faces) <= 300 and not (export / "humanref.ply").exists()


def test_export_config_rejects_bad_formats():
    with pytest.raises(UsageError):
        ExportConfig(formats=("fbx",))
    with pytest.raises(UsageError):
        ExportConfig(faces=10)


def _gltf_validator() -> list[str] | None:
    """``node tests/tools/validate_gltf.js`` when node can load the npm package ``gltf-validator``."""
    import shutil
    import subprocess
    from pathlib import Path

    node = shutil.which("node")
    if node is None:
        return None
    probe = subprocess.run([node, "-e", "require('gltf-validator')"], capture_output=True, timeout=30)
    if probe.returncode != 0:
        return None
    return [node, str(Path(__file__).parent / "tools" / "validate_gltf.js")]


def test_glb_passes_the_khronos_validator(tmp_path, textured):
    import subprocess

    command = _gltf_validator()
    if command is None:
        pytest.skip("the Khronos glTF validator is not installed (npm install -g gltf-validator)")
    fm.write_glb(tmp_path / "h.glb", textured.to_y_up())
    result = subprocess.run([*command, str(tmp_path / "h.glb")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["numErrors"] == 0 and report["numWarnings"] == 0, report
