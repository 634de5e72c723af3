"""Mesh clean-up and decimation for marching-cubes output (pymeshlab + numpy).

Marching cubes on a learned SDF leaves small floating blobs (hash-grid noise far from the body),
a few tiny holes where the surface grazes the grid, and far more triangles than a textured asset
needs. :func:`clean_mesh` removes the first two, :func:`decimate` the third (quadric edge collapse),
and :func:`decimate_textured` does the same while keeping per-corner UVs (for ``export --faces``).

All functions take and return plain numpy arrays: vertices ``(V, 3)`` float, faces ``(F, 3)`` int.
pymeshlab is imported inside the functions; after its filters the vertex/face matrices are read only
after compacting, because reading a mesh with deleted elements raises.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np


def connected_components(faces: np.ndarray, num_vertices: int) -> np.ndarray:
    """Component label ``(F,)`` of every face; faces sharing a vertex are in the same component."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components as cc

    faces = np.asarray(faces, dtype=np.int64)
    rows = np.concatenate([faces[:, 0], faces[:, 1], faces[:, 2]])
    cols = np.concatenate([faces[:, 1], faces[:, 2], faces[:, 0]])
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(num_vertices, num_vertices))
    _, vertex_label = cc(graph, directed=False)
    return vertex_label[faces[:, 0]]


def remove_unreferenced(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop vertices no face uses and renumber the faces. Returns ``(V', 3)``, ``(F, 3)``."""
    used = np.unique(faces)
    remap = np.full(len(vertices), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    return vertices[used], remap[faces]


def keep_large_components(
    vertices: np.ndarray, faces: np.ndarray, min_ratio: float = 0.05
) -> tuple[np.ndarray, np.ndarray]:
    """Keep the components with at least ``min_ratio`` times the faces of the largest one.

    ``min_ratio = 1.0`` keeps only the largest component; the default keeps a hand that marching cubes
    cut off at a thin wrist while removing floaters, which are orders of magnitude smaller.
    """
    if len(faces) == 0:
        return vertices, faces
    label = connected_components(faces, len(vertices))
    counts = np.bincount(label)
    keep = counts >= min_ratio * counts.max()
    if min_ratio >= 1.0:  # exactly one, even on ties
        keep = np.zeros_like(keep)
        keep[np.argmax(counts)] = True
    return remove_unreferenced(vertices, faces[keep[label]])


def _to_meshset(vertices: np.ndarray, faces: np.ndarray, **extra):
    import pymeshlab

    ms = pymeshlab.MeshSet()
    ms.add_mesh(
        pymeshlab.Mesh(
            vertex_matrix=np.ascontiguousarray(vertices, dtype=np.float64),
            face_matrix=np.ascontiguousarray(faces, dtype=np.int32),
            **extra,
        )
    )
    return ms


def _read(ms) -> tuple[np.ndarray, np.ndarray]:
    ms.meshing_remove_unreferenced_vertices()
    mesh = ms.current_mesh()
    mesh.compact()
    return mesh.vertex_matrix().astype(np.float32), mesh.face_matrix().astype(np.int64)


def clean_mesh(
    vertices: np.ndarray,
    faces: np.ndarray,
    *,
    min_component_ratio: float = 0.05,
    max_hole_edges: int = 64,
) -> tuple[np.ndarray, np.ndarray]:
    """Remove floaters, weld duplicates, repair non-manifold spots and close holes of ``<= max_hole_edges``.

    Returns the cleaned ``(V', 3)`` float32 vertices and ``(F', 3)`` int64 faces. Holes bigger than the
    limit (an open neck cut by the bounding box, say) are left open on purpose: filling them with a flat
    cap looks worse than the hole.
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    if len(faces) == 0:
        return vertices.astype(np.float32), faces
    ms = _to_meshset(vertices, faces)
    ms.meshing_remove_duplicate_vertices()
    ms.meshing_remove_duplicate_faces()
    ms.meshing_repair_non_manifold_edges()
    ms.meshing_repair_non_manifold_vertices()
    v, f = _read(ms)
    v, f = keep_large_components(v, f, min_component_ratio)
    if max_hole_edges > 0 and len(f) > 0:
        ms = _to_meshset(v, f)
        ms.meshing_close_holes(maxholesize=int(max_hole_edges), selfintersection=False)
        v, f = _read(ms)
    return v.astype(np.float32), f


def decimate(vertices: np.ndarray, faces: np.ndarray, target_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """Quadric edge-collapse decimation to about ``target_faces`` faces (no-op when already below).

    Topology and normals are preserved so the silhouette keeps its shape; boundaries are kept in place.
    """
    if len(faces) <= target_faces:
        return np.asarray(vertices, dtype=np.float32), np.asarray(faces, dtype=np.int64)
    ms = _to_meshset(vertices, faces)
    ms.meshing_decimation_quadric_edge_collapse(
        targetfacenum=int(target_faces),
        qualitythr=0.5,
        preserveboundary=True,
        preservenormal=True,
        preservetopology=True,
        optimalplacement=True,
        autoclean=True,
    )
    return _read(ms)


def decimate_textured(
    vertices: np.ndarray, faces: np.ndarray, uvs: np.ndarray, target_faces: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decimate a UV-mapped mesh to about ``target_faces`` while keeping its texture coordinates valid.

    ``uvs`` is per vertex ``(V, 2)`` (a vertex per distinct (position, uv) pair, as xatlas returns).
    pymeshlab's texture-aware quadric collapse works on per-corner (wedge) UVs and keeps UV seams in
    place. Returns per-vertex arrays again: ``(V', 3)`` float32, ``(F', 3)`` int64, ``(V', 2)`` float32.
    """
    import pymeshlab

    faces = np.asarray(faces, dtype=np.int64)
    if len(faces) <= target_faces:
        return np.asarray(vertices, np.float32), faces, np.asarray(uvs, np.float32)
    # Weld positions so the collapse sees one connected surface; the seams live in the wedge UVs.
    positions, inverse = np.unique(np.round(np.asarray(vertices, np.float64), 7), axis=0, return_inverse=True)
    welded = inverse.reshape(-1)[faces]
    ms = pymeshlab.MeshSet()
    # pymeshlab only accepts wedge UVs that belong to a texture, which its OBJ reader sets up.
    with tempfile.TemporaryDirectory() as tmp:
        _write_uv_obj(Path(tmp), positions, welded, np.asarray(uvs, np.float64), faces)
        ms.load_new_mesh(str(Path(tmp) / "mesh.obj"))
    ms.meshing_decimation_quadric_edge_collapse_with_texture(
        targetfacenum=int(target_faces), qualitythr=0.5, preserveboundary=True, optimalplacement=True
    )
    ms.meshing_remove_unreferenced_vertices()
    mesh = ms.current_mesh()
    mesh.compact()
    pos = mesh.vertex_matrix()
    tri = mesh.face_matrix().astype(np.int64)
    wedge = mesh.wedge_tex_coord_matrix().reshape(-1, 2)
    # Split again: one output vertex per distinct (position index, uv) corner.
    corner = np.concatenate([tri.reshape(-1, 1).astype(np.float64), wedge], axis=1)
    keys, corner_to_vertex = np.unique(np.round(corner, 7), axis=0, return_inverse=True)
    new_vertices = pos[keys[:, 0].astype(np.int64)].astype(np.float32)
    new_uvs = keys[:, 1:].astype(np.float32)
    return new_vertices, corner_to_vertex.reshape(-1, 3).astype(np.int64), new_uvs


def _write_uv_obj(folder: Path, positions, position_faces, uvs, uv_faces) -> None:
    """A minimal OBJ + MTL + 1x1 PNG with separate position and UV indices (``f v/vt``)."""
    from PIL import Image

    lines = ["mtllib mesh.mtl", "usemtl material0"]
    lines += [f"v {x:.7f} {y:.7f} {z:.7f}" for x, y, z in positions]
    lines += [f"vt {u:.7f} {v:.7f}" for u, v in uvs]
    corners = np.stack([position_faces + 1, uv_faces + 1], axis=-1)
    lines += ["f " + " ".join(f"{p}/{t}" for p, t in tri) for tri in corners]
    (folder / "mesh.obj").write_text("\n".join(lines) + "\n")
    (folder / "mesh.mtl").write_text("newmtl material0\nmap_Kd texture.png\n")
    Image.new("RGB", (1, 1)).save(folder / "texture.png")
