"""UV atlas of a triangle mesh with xatlas.

xatlas cuts the surface into charts, flattens each one and packs them into the unit square. Its cost
grows quickly with the face count (about 5 s for 20k faces and 25 s for 50k on a laptop-class CPU),
so :func:`unwrap` refuses meshes above ``max_faces``: decimate first (``mesh_ops.decimate``).

Convention: UVs are in [0, 1]^2 with v pointing up (OBJ's convention: v = 0 is the bottom row of the
image). The texture image is stored with row 0 at the top, so texel row ``r`` covers
``v in [1 - (r+1)/H, 1 - r/H]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from humanref_cli.errors import UsageError


@dataclass(frozen=True)
class UVMesh:
    """A mesh split along its UV seams: one vertex per distinct (position, uv) pair.

    ``vertices (V', 3)`` float32, ``faces (F, 3)`` int64, ``uvs (V', 2)`` float32 in [0, 1],
    ``vmapping (V',)`` int64: index of each new vertex in the input mesh.
    """

    vertices: np.ndarray
    faces: np.ndarray
    uvs: np.ndarray
    vmapping: np.ndarray


def unwrap(
    vertices: np.ndarray,
    faces: np.ndarray,
    *,
    texture_size: int = 1024,
    padding: int = 4,
    max_faces: int = 60_000,
) -> UVMesh:
    """Unwrap ``(V, 3)``/``(F, 3)`` into a UV atlas packed for a ``texture_size``² texture.

    ``padding`` texels are left between charts so that bilinear lookups and mip levels near a chart
    border do not read a neighbouring chart. Face order is kept: face ``i`` of the result is face ``i``
    of the input.
    """
    import xatlas

    faces = np.asarray(faces, dtype=np.uint32)
    if len(faces) > max_faces:
        raise UsageError(
            f"UV unwrapping {len(faces)} faces would take minutes (limit {max_faces})",
            hint="decimate the mesh first (texture.target_faces) or raise texture.max_unwrap_faces",
        )
    atlas = xatlas.Atlas()
    atlas.add_mesh(np.ascontiguousarray(vertices, dtype=np.float32), np.ascontiguousarray(faces))
    chart_options = xatlas.ChartOptions()
    pack_options = xatlas.PackOptions()
    pack_options.resolution = int(texture_size)
    pack_options.padding = int(padding)
    pack_options.bilinear = True
    pack_options.rotate_charts = True
    atlas.generate(chart_options, pack_options)
    vmapping, new_faces, uvs = atlas[0]
    vmapping = np.asarray(vmapping, dtype=np.int64)
    return UVMesh(
        vertices=np.asarray(vertices, dtype=np.float32)[vmapping],
        faces=np.asarray(new_faces, dtype=np.int64),
        uvs=np.asarray(uvs, dtype=np.float32),
        vmapping=vmapping,
    )
