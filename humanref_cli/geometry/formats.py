"""Write and re-read the delivered files: GLB, OBJ + MTL + PNG, PLY with vertex colours.

A :class:`TexturedMesh` is the texture stage's result: a mesh split along its UV seams (one vertex per
(position, uv) pair), its UVs (v up, OBJ's convention) and an sRGB albedo texture.

Orientation. The workspace world is z up with the person facing +x (``render/camera.py``). glTF is y up
with the front facing +z, and most OBJ/PLY viewers assume the same, so exported files use
``(x, y, z)_out = (y, z, x)_world``: a cyclic permutation (a proper rotation, so the winding and the
normals stay outward). ``texture/mesh.obj`` stays in the world frame.

Every file goes through ``humanref_cli.io.atomic_path``; the ``check_*`` functions reload a file with
trimesh (an independent reader) and compare it with what was written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from humanref_cli.io import atomic_path, read_png, write_png, write_text

WORLD_TO_Y_UP = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]], dtype=np.float64)
"""Rows are the output axes in world coordinates: ``p_out = WORLD_TO_Y_UP @ p_world``."""


@dataclass(frozen=True)
class TexturedMesh:
    """``vertices (V, 3)`` float32, ``faces (F, 3)`` int64, ``uvs (V, 2)`` float32,
    ``texture (H, W, 3)`` uint8."""

    vertices: np.ndarray
    faces: np.ndarray
    uvs: np.ndarray
    texture: np.ndarray

    def to_y_up(self) -> TexturedMesh:
        v = (np.asarray(self.vertices, np.float64) @ WORLD_TO_Y_UP.T).astype(np.float32)
        return TexturedMesh(v, self.faces, self.uvs, self.texture)


def weld(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge vertices with identical positions (UV seam copies).

    Returns ``positions (P, 3)``, ``welded_faces (F, 3)`` and ``inverse (V,)`` (split vertex -> welded).
    """
    positions, inverse = np.unique(np.asarray(vertices, np.float32), axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    return positions, inverse[np.asarray(faces, np.int64)], inverse


def smooth_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit normals ``(V, 3)`` computed on the welded surface, so seams shade smoothly."""
    from humanref_cli.render.raster import vertex_normals

    positions, welded_faces, inverse = weld(vertices, faces)
    return vertex_normals(positions, welded_faces)[inverse]


def write_obj(path: str | Path, mesh: TexturedMesh, texture_name: str | None = None) -> list[Path]:
    """Write ``name.obj`` + ``name.mtl`` + the texture PNG (``texture_name``, default ``name.png``).

    Returns the three paths. Vertex ``i`` has ``v``, ``vt`` and ``vn`` line ``i``, so faces are
    ``f a/a/a b/b/b c/c/c``.
    """
    path = Path(path)
    mtl = path.with_suffix(".mtl")
    png = path.parent / texture_name if texture_name else path.with_suffix(".png")
    normals = smooth_normals(mesh.vertices, mesh.faces)
    lines = [
        f"# humanref textured mesh: {len(mesh.vertices)} vertices, {len(mesh.faces)} faces",
        f"mtllib {mtl.name}",
    ]
    lines += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in mesh.vertices]
    lines += [f"vt {u:.6f} {v:.6f}" for u, v in mesh.uvs]
    lines += [f"vn {x:.5f} {y:.5f} {z:.5f}" for x, y, z in normals]
    lines.append("usemtl albedo")
    lines += [f"f {a}/{a}/{a} {b}/{b}/{b} {c}/{c}/{c}" for a, b, c in np.asarray(mesh.faces) + 1]
    write_png(png, mesh.texture)
    material = ["newmtl albedo", "Ka 1 1 1", "Kd 1 1 1", "Ks 0 0 0", "d 1", "illum 1", f"map_Kd {png.name}"]
    write_text(mtl, "\n".join(material) + "\n")
    write_text(path, "\n".join(lines) + "\n")
    return [path, mtl, png]


def read_obj(path: str | Path) -> TexturedMesh:
    """Read an OBJ written by :func:`write_obj` (or any OBJ whose ``f`` corners use ``v/vt`` pairs).

    Each distinct ``(v, vt)`` pair becomes one vertex; the texture is the ``map_Kd`` of its MTL.
    """
    path = Path(path)
    pos, tex, corners, mtllib = [], [], [], None
    for line in path.read_text().splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "v":
            pos.append([float(x) for x in parts[1:4]])
        elif parts[0] == "vt":
            tex.append([float(x) for x in parts[1:3]])
        elif parts[0] == "f":
            if len(parts) != 4:
                raise ValueError(f"{path}: only triangles are supported")
            corners.append([tuple(int(i) - 1 for i in c.split("/")[:2]) for c in parts[1:]])
        elif parts[0] == "mtllib":
            mtllib = path.parent / parts[1]
    pairs = np.asarray(corners, dtype=np.int64).reshape(-1, 2)
    keys, inverse = np.unique(pairs, axis=0, return_inverse=True)
    texture_path = _map_kd(mtllib) if mtllib is not None else None
    if texture_path is None:
        raise ValueError(f"{path}: no map_Kd texture in its material")
    return TexturedMesh(
        vertices=np.asarray(pos, np.float32)[keys[:, 0]],
        faces=inverse.reshape(-1, 3).astype(np.int64),
        uvs=np.asarray(tex, np.float32)[keys[:, 1]],
        texture=read_png(texture_path)[..., :3],
    )


def _map_kd(mtl: Path) -> Path | None:
    for line in mtl.read_text().splitlines():
        parts = line.split()
        if parts and parts[0] == "map_Kd":
            return mtl.parent / parts[-1]
    return None


def write_glb(path: str | Path, mesh: TexturedMesh) -> Path:
    """Binary glTF with one mesh, its UVs and a PBR material whose base colour is the embedded PNG."""
    import trimesh
    from PIL import Image
    from trimesh.visual import TextureVisuals
    from trimesh.visual.material import PBRMaterial

    material = PBRMaterial(
        name="albedo",
        baseColorTexture=Image.fromarray(np.ascontiguousarray(mesh.texture)),
        metallicFactor=0.0,
        roughnessFactor=1.0,
        doubleSided=False,
    )
    tm = trimesh.Trimesh(
        vertices=mesh.vertices,
        faces=mesh.faces,
        vertex_normals=smooth_normals(mesh.vertices, mesh.faces),
        visual=TextureVisuals(uv=mesh.uvs, material=material),
        process=False,
    )
    with atomic_path(path) as tmp:
        tm.export(tmp, file_type="glb")
    return Path(path)


def vertex_colors_from_texture(mesh: TexturedMesh) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Welded mesh with per-vertex colours: the mean texture colour over each vertex's seam copies.

    Returns ``positions (P, 3)``, ``faces (F, 3)``, ``colors (P, 3)`` uint8.
    """
    from humanref_cli.render.bake import sample_texture

    positions, faces, inverse = weld(mesh.vertices, mesh.faces)
    samples = sample_texture(mesh.texture.astype(np.float32), mesh.uvs)
    total = np.zeros((len(positions), 3), np.float64)
    np.add.at(total, inverse, samples)
    count = np.bincount(inverse, minlength=len(positions))[:, None]
    colors = np.clip(np.round(total / np.maximum(count, 1)), 0, 255).astype(np.uint8)
    return positions, faces, colors


def write_ply(path: str | Path, mesh: TexturedMesh) -> Path:
    """Binary PLY of the welded mesh with RGBA vertex colours sampled from the texture."""
    import trimesh

    positions, faces, colors = vertex_colors_from_texture(mesh)
    rgba = np.concatenate([colors, np.full((len(colors), 1), 255, np.uint8)], axis=1)
    tm = trimesh.Trimesh(vertices=positions, faces=faces, vertex_colors=rgba, process=False)
    with atomic_path(path) as tmp:
        tm.export(tmp, file_type="ply", encoding="binary")
    return Path(path)


def _load_single(path: Path):
    import trimesh

    loaded = trimesh.load(path, process=False)
    if isinstance(loaded, trimesh.Scene):
        geoms = list(loaded.geometry.values())
        if len(geoms) != 1:
            raise ValueError(f"{path}: expected one mesh, found {len(geoms)}")
        loaded = geoms[0]
    return loaded


def check_textured(path: str | Path, mesh: TexturedMesh, atol: float = 1e-4) -> dict:
    """Reload a GLB or OBJ with trimesh and compare vertices, faces, UVs and texture size with ``mesh``.

    Raises ``ValueError`` on any mismatch; returns the reloaded counts.
    """
    path = Path(path)
    tm = _load_single(path)
    uv = np.asarray(tm.visual.uv, np.float32)
    material = tm.visual.material
    image = getattr(material, "baseColorTexture", None) or getattr(material, "image", None)
    found = {
        "vertices": len(tm.vertices),
        "faces": len(tm.faces),
        "texture_size": list(image.size) if image is not None else None,
    }
    expected_size = [mesh.texture.shape[1], mesh.texture.shape[0]]
    if found["vertices"] != len(mesh.vertices) or found["faces"] != len(mesh.faces):
        raise ValueError(
            f"{path}: {found} differs from {len(mesh.vertices)} vertices, {len(mesh.faces)} faces"
        )
    if found["texture_size"] != expected_size:
        raise ValueError(f"{path}: texture {found['texture_size']} != {expected_size}")
    # Readers may reorder vertices: compare sorted (position, uv) rows.
    got = np.concatenate([np.asarray(tm.vertices, np.float32), uv], axis=1)
    want = np.concatenate([mesh.vertices, mesh.uvs], axis=1)
    if not np.allclose(_sort_rows(got), _sort_rows(want), atol=atol):
        raise ValueError(f"{path}: vertex positions or UVs differ from what was written")
    return found


def check_ply(path: str | Path, mesh: TexturedMesh) -> dict:
    """Reload a PLY with trimesh and compare it with the welded, vertex-coloured ``mesh``."""
    tm = _load_single(Path(path))
    positions, faces, colors = vertex_colors_from_texture(mesh)
    got_colors = np.asarray(tm.visual.vertex_colors)[:, :3]
    if len(tm.vertices) != len(positions) or len(tm.faces) != len(faces):
        raise ValueError(
            f"{path}: {len(tm.vertices)} vertices / {len(tm.faces)} faces, expected {len(positions)}"
        )
    if not np.array_equal(got_colors, colors) or not np.allclose(tm.vertices, positions, atol=1e-5):
        raise ValueError(f"{path}: vertex positions or colours differ from what was written")
    return {"vertices": len(tm.vertices), "faces": len(tm.faces)}


def _sort_rows(a: np.ndarray) -> np.ndarray:
    return a[np.lexsort(np.round(a, 4).T[::-1])]
