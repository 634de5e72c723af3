"""Stage ``export``: the files a user is handed, from ``texture/mesh.obj`` + ``albedo.png``.

- ``humanref.glb`` (embedded PNG, PBR base colour), ``humanref.obj`` + ``.mtl`` + ``.png``,
  ``humanref.ply`` (welded, vertex colours), as chosen by ``formats``; all y up, facing +z (glTF's
  convention, ``geometry/formats.py``), optionally decimated to about ``faces`` faces;
- ``turntable.mp4`` (``turntable.gif`` when ffmpeg is unusable) and ``sheet.png`` (front/side/back,
  shaded colour over normals);
- ``metadata.json``: input hash, models and guidance used, every stage's config and timings, the files.

Each written mesh is reloaded with trimesh and compared with what was meant to be written.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from humanref_cli.workspace import STAGES, Workspace

RECORD_KEYS = ("status", "key", "seconds", "steps", "device", "started", "finished", "config", "notes")
"""The fields of each stage record copied into ``metadata.json``."""
ORIENTATION = {
    "up": "+y",
    "front": "+z",
    "units": "scene box [-1, 1] (a standing person is ~1.8 tall)",
    "from_world": "(x, y, z)_file = (y, z, x)_world",
}


def run_export(
    ws: Workspace,
    cfg,
    rt,
    *,
    force: bool = False,
    formats: tuple[str, ...] | list[str] | None = None,
    faces: int | None = None,
) -> dict[str, Any]:
    """``formats``/``faces`` override the config's (the CLI's ``--format`` and ``--faces``)."""
    if formats is not None:
        cfg = replace(cfg, formats=tuple(formats))
    if faces is not None:
        cfg = replace(cfg, faces=int(faces))
    ws.require("texture")
    tex = ws.root / "texture"
    inputs = [tex / "mesh.obj", tex / "mesh.mtl", tex / "albedo.png"]
    key = ws.stage_key("export", cfg, inputs, {})
    if not force and ws.is_fresh("export", key):
        rt.info("export: up to date")
        return ws.summary("export")
    t_start = time.monotonic()
    with ws.stage(
        "export", key=key, cfg=cfg, inputs=inputs, models={}, steps=None, rt=rt, force=force
    ) as run:
        written, checks = _write_meshes(tex / "mesh.obj", run.dir, cfg, rt)
        previews = _write_previews(tex / "mesh.obj", run.dir, cfg, rt)
        run.note(checks=checks)
        meta = run.dir / "metadata.json"
        _write_metadata(ws, meta, cfg, written + previews, checks, time.monotonic() - t_start)
        run.add_output(*written, *previews, meta)
    out: dict = {"stage": "export", "files": [str(p) for p in written + previews + [meta]]}
    for p in written + previews:  # one line per deliverable: glb, obj, ply, sheet, turntable
        if p.suffix in (".glb", ".obj", ".ply"):
            out[p.suffix[1:]] = str(p)
        elif p.stem in ("turntable", "sheet"):
            out[p.stem] = str(p)
    return out


def _write_meshes(obj_path: Path, out_dir: Path, cfg, rt) -> tuple[list[Path], dict[str, Any]]:
    from humanref_cli.geometry import formats as fm
    from humanref_cli.geometry.mesh_ops import decimate_textured

    mesh = fm.read_obj(obj_path)
    if cfg.faces is not None and len(mesh.faces) > cfg.faces:
        v, f, uv = decimate_textured(mesh.vertices, mesh.faces, mesh.uvs, cfg.faces)
        rt.info(f"export: decimated {len(mesh.faces)} -> {len(f)} faces")
        mesh = fm.TexturedMesh(v, f, uv, mesh.texture)
    mesh = mesh.to_y_up()
    written: list[Path] = []
    checks: dict[str, Any] = {}
    if "glb" in cfg.formats:
        written.append(fm.write_glb(out_dir / "humanref.glb", mesh))
        checks["glb"] = fm.check_textured(written[-1], mesh)
    if "obj" in cfg.formats:
        written += fm.write_obj(out_dir / "humanref.obj", mesh)
        checks["obj"] = fm.check_textured(out_dir / "humanref.obj", mesh)
    if "ply" in cfg.formats:
        written.append(fm.write_ply(out_dir / "humanref.ply", mesh))
        checks["ply"] = fm.check_ply(written[-1], mesh)
    rt.info("export: " + ", ".join(f"{k} ok ({v['vertices']} vertices)" for k, v in checks.items()))
    return written, checks


def _write_previews(obj_path: Path, out_dir: Path, cfg, rt) -> list[Path]:
    from humanref_cli.geometry.formats import read_obj
    from humanref_cli.render.turntable import turntable_frames, write_contact_sheet, write_video

    mesh = read_obj(obj_path)  # world frame: the preview cameras are the workspace's
    paths = [write_contact_sheet(out_dir / "sheet.png", mesh, size=cfg.sheet_size)]
    if cfg.turntable_frames > 0:
        frames = turntable_frames(mesh, frames=cfg.turntable_frames, size=cfg.turntable_size)
        video = write_video(out_dir / "turntable.mp4", frames, fps=cfg.turntable_fps)
        if video.suffix == ".gif":
            rt.warn("export: ffmpeg is not usable here; wrote turntable.gif instead of turntable.mp4")
        paths.append(video)
    return paths


def _write_metadata(ws: Workspace, path: Path, cfg, files: list[Path], checks, seconds: float) -> Path:
    """``metadata.json``: where the result came from and how it was made, from the manifest's records."""
    from humanref_cli.configs.base import to_dict
    from humanref_cli.io import sha256_file, write_json
    from humanref_cli.workspace import versions

    stages = ws.load_manifest()["stages"]
    records = {s: stages[s] for s in STAGES if s != "export" and s in stages}
    prep = records.get("prep") or {}
    # the photo (and a user mask) as given, plus prep's copy of the photo
    photo = dict(prep.get("inputs") or {})
    photo.update({p: h for p, h in (prep.get("outputs") or {}).items() if Path(p).name.startswith("input.")})
    models: dict[str, str] = {}
    for rec in records.values():
        models.update(rec.get("models") or {})
    meta = {
        "input": photo,
        "models": models,
        "guidance": {
            s: (records[s].get("notes") or {}).get("guidance")
            for s in ("coarse", "refine", "texture")
            if s in records
        },
        "stages": {s: {k: rec.get(k) for k in RECORD_KEYS} for s, rec in records.items()},
        "timings_s": {**{s: rec.get("seconds") for s, rec in records.items()}, "export": round(seconds, 2)},
        "export": {
            "config": to_dict(cfg),
            "orientation": ORIENTATION,
            "checks": checks,
            "files": {ws.rel(p): sha256_file(p) for p in files},
        },
        "versions": versions(),
    }
    return write_json(path, meta)
