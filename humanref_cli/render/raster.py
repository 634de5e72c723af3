"""Offscreen triangle-mesh rasteriser (moderngl, EGL) for the orthographic cameras of ``camera.py``.

Used for ground truth and previews (synthetic subjects, body-prior normal maps, mesh previews), not
for optimisation: nothing here is differentiable. It runs with no display on Mesa's llvmpipe.

Two GL programs do all the work:

- an *attribute* pass that interpolates a per-corner ``vec3`` (colours, normals) and writes coverage
  in alpha, rendered at ``supersample``× the output size and box-filtered down (anti-aliasing);
- an *id* pass that writes ``gl_PrimitiveID + 1`` into an integer target and the camera depth into a
  float target, at the output size (one sample per pixel centre, no filtering). Per-face labels are
  looked up from the face ids, so they are exact.

Outputs are numpy arrays with row 0 at the image top (GL's rows are flipped after reading). Pixel
``(i, j)`` samples the camera plane at its centre ``(i + 0.5, j + 0.5)``, as ``world_to_pixel``.
"""

from __future__ import annotations

import numpy as np
import torch

from humanref_cli.render.camera import gl_view_projection

_ATTR_VS = """
#version 330
uniform mat4 mvp;
in vec3 in_pos;
in vec3 in_attr;
out vec3 v_attr;
void main() {
    v_attr = in_attr;
    gl_Position = mvp * vec4(in_pos, 1.0);
}
"""
_ATTR_FS = """
#version 330
in vec3 v_attr;
out vec4 f_out;
void main() { f_out = vec4(v_attr, 1.0); }
"""
_SHADE_VS = """
#version 330
uniform mat4 mvp;
in vec3 in_pos;
in vec3 in_attr;
in vec3 in_normal;
out vec3 v_albedo;
out vec3 v_normal;
void main() {
    v_albedo = in_attr;
    v_normal = in_normal;
    gl_Position = mvp * vec4(in_pos, 1.0);
}
"""
_SHADE_FS = """
#version 330
uniform vec3 light;
uniform float ambient;
in vec3 v_albedo;
in vec3 v_normal;
out vec4 f_out;
void main() {
    float lambert = max(dot(normalize(v_normal), light), 0.0);
    f_out = vec4(v_albedo * (ambient + (1.0 - ambient) * lambert), 1.0);
}
"""
_ID_VS = """
#version 330
uniform mat4 mvp;
in vec3 in_pos;
out float v_ndc_z;
void main() {
    gl_Position = mvp * vec4(in_pos, 1.0);
    v_ndc_z = gl_Position.z;
}
"""
_ID_FS = """
#version 330
in float v_ndc_z;
layout(location = 0) out int f_id;
layout(location = 1) out float f_z;
void main() {
    f_id = gl_PrimitiveID + 1;
    f_z = v_ndc_z;
}
"""


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals ``(V, 3)`` float32 of a triangle mesh.

    ``n_v = normalize(sum over faces f touching v of (b - a) x (c - a))``; the cross product's length
    is twice the face area, so larger faces weigh more. Isolated vertices get ``(0, 0, 0)``.
    """
    v = _as_numpy(vertices, np.float64).reshape(-1, 3)
    f = _as_numpy(faces, np.int64).reshape(-1, 3)
    fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    vn = np.zeros_like(v)
    for k in range(3):
        np.add.at(vn, f[:, k], fn)
    norm = np.linalg.norm(vn, axis=1, keepdims=True)
    return (vn / np.maximum(norm, 1e-12)).astype(np.float32)


def _load_triton_before_egl() -> None:
    """Import triton (when installed) before an EGL context exists.

    torch's optimisers import ``torch._dynamo`` and with it triton lazily, on their first ``step()``;
    loading triton after Mesa's EGL driver is in the process segfaults (seen with torch 2.14 + Mesa
    llvmpipe). Loading it first costs ~0.25 s once and avoids the crash.
    """
    import importlib.util

    if importlib.util.find_spec("triton") is not None:
        import triton  # noqa: F401


def _as_numpy(x, dtype) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(np.asarray(x, dtype=dtype))


def _as_c2w(c2w) -> torch.Tensor:
    if isinstance(c2w, torch.Tensor):
        return c2w.detach().cpu().float()
    return torch.as_tensor(np.asarray(c2w, dtype=np.float32))


def _box_downsample(img: np.ndarray, factor: int) -> np.ndarray:
    """Mean over ``factor × factor`` blocks: ``(H*f, W*f, C) -> (H, W, C)`` (OpenCV's area filter is
    exactly this box mean for an integer factor, and much faster than a numpy reshape-mean)."""
    if factor == 1:
        return img
    import cv2

    h, w = img.shape[0] // factor, img.shape[1] // factor
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA).reshape(h, w, img.shape[2])


class MeshRasterizer:
    """Owns one EGL context and its framebuffers for ``width × height`` renders.

    ``supersample`` (≥ 1) anti-aliases the colour, normal and mask passes by rendering at that
    factor and averaging; face ids, labels and depth are always one sample per pixel.
    ``radius`` is the half-extent of the image plane; ``depth_range`` the camera depths kept (the
    camera of ``camera_to_world`` sits at distance ~1 from the origin, so geometry may lie behind
    its plane: the default keeps depths in ``[-4, 4]``).

    Use as a context manager, or call :meth:`release`::

        with MeshRasterizer(512, 512) as r:
            ids, depth = r.face_ids(vertices, faces, camera_to_world(0.0, 0.0))
    """

    def __init__(
        self,
        width: int,
        height: int,
        supersample: int = 1,
        radius: float = 1.0,
        depth_range: tuple[float, float] = (-4.0, 4.0),
    ):
        import moderngl

        _load_triton_before_egl()
        if supersample < 1:
            raise ValueError(f"supersample must be >= 1, got {supersample}")
        self.width, self.height, self.supersample = int(width), int(height), int(supersample)
        self.radius = float(radius)
        self.near, self.far = float(depth_range[0]), float(depth_range[1])
        self.ctx = moderngl.create_standalone_context(backend="egl")
        self.ctx.enable(moderngl.DEPTH_TEST)
        self._attr_prog = self.ctx.program(vertex_shader=_ATTR_VS, fragment_shader=_ATTR_FS)
        self._shade_prog = self.ctx.program(vertex_shader=_SHADE_VS, fragment_shader=_SHADE_FS)
        self._id_prog = self.ctx.program(vertex_shader=_ID_VS, fragment_shader=_ID_FS)
        sw, sh = self.width * self.supersample, self.height * self.supersample
        self._attr_fbo = self.ctx.framebuffer(
            color_attachments=[self.ctx.texture((sw, sh), 4, dtype="f4")],
            depth_attachment=self.ctx.depth_renderbuffer((sw, sh)),
        )
        self._id_fbo = self.ctx.framebuffer(
            color_attachments=[
                self.ctx.texture((self.width, self.height), 1, dtype="i4"),
                self.ctx.texture((self.width, self.height), 1, dtype="f4"),
            ],
            depth_attachment=self.ctx.depth_renderbuffer((self.width, self.height)),
        )

    def __enter__(self) -> MeshRasterizer:
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def release(self) -> None:
        """Free every GL object and the context (idempotent)."""
        if self.ctx is None:
            return
        with self.ctx:
            for fbo in (self._attr_fbo, self._id_fbo):
                for att in (*fbo.color_attachments, fbo.depth_attachment):
                    att.release()
                fbo.release()
            for prog in (self._attr_prog, self._shade_prog, self._id_prog):
                prog.release()
        self.ctx.release()
        self.ctx = None

    # ------------------------------------------------------------------ low-level passes
    def _mvp(self, c2w) -> bytes:
        vp = gl_view_projection(_as_c2w(c2w), near=self.near, far=self.far, radius=self.radius)
        return vp.numpy().astype(np.float32).T.tobytes()  # GL reads column-major

    def _draw(self, prog, fbo, vertices, faces, c2w, **attrs) -> None:
        """Draw the mesh with per-vertex ``(V, 3)`` attributes ``in_<name>`` into ``fbo``."""
        # Several rasterisers may live in one process: make ours current for the draw.
        with self.ctx:
            self._draw_current(prog, fbo, vertices, faces, c2w, attrs)

    def _draw_current(self, prog, fbo, vertices, faces, c2w, attrs) -> None:
        v = _as_numpy(vertices, np.float32).reshape(-1, 3)
        f = _as_numpy(faces, np.int32).reshape(-1, 3)
        prog["mvp"].write(self._mvp(c2w))
        buffers, content = [], []
        for name, value in {"pos": v, **attrs}.items():
            buffers.append(self.ctx.buffer(_as_numpy(value, np.float32).reshape(-1, 3).tobytes()))
            content.append((buffers[-1], "3f", f"in_{name}"))
        ibo = self.ctx.buffer(f.tobytes())
        vao = self.ctx.vertex_array(prog, content, index_buffer=ibo, index_element_size=4)
        fbo.use()
        fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        vao.render()
        vao.release()
        ibo.release()
        for b in buffers:
            b.release()

    def render_attribute(self, vertices, faces, attr, c2w) -> np.ndarray:
        """Interpolate a per-vertex ``attr (V, 3)``: returns ``(H, W, 4)`` float32, alpha = coverage.

        RGB is the coverage-weighted mean over the supersamples (premultiplied by coverage); divide
        by alpha to un-premultiply. No lighting.
        """
        self._draw(self._attr_prog, self._attr_fbo, vertices, faces, c2w, attr=attr)
        return _box_downsample(self._read_attr(), self.supersample)

    def _read_attr(self) -> np.ndarray:
        tex = self._attr_fbo.color_attachments[0]
        with self.ctx:
            data = tex.read()
        img = np.frombuffer(data, dtype=np.float32).reshape(tex.height, tex.width, 4)
        return img[::-1].copy()

    def face_ids(self, vertices, faces, c2w) -> tuple[np.ndarray, np.ndarray]:
        """Visible face per pixel and its depth.

        Returns ``ids (H, W)`` int32 (face index + 1, 0 = background) and ``depth (H, W)`` float32,
        the distance from the camera plane along the view direction (as ``world_to_pixel``), 0 in
        the background. Orthographic NDC z is linear in depth: ``depth = near + (z + 1)/2 (far - near)``.
        """
        self._draw(self._id_prog, self._id_fbo, vertices, faces, c2w)
        id_tex, z_tex = self._id_fbo.color_attachments
        with self.ctx:
            id_data, z_data = id_tex.read(), z_tex.read()
        shape = (self.height, self.width)
        ids = np.frombuffer(id_data, dtype=np.int32).reshape(shape)[::-1].copy()
        z = np.frombuffer(z_data, dtype=np.float32).reshape(shape)[::-1]
        depth = np.where(ids > 0, self.near + (z + 1.0) * 0.5 * (self.far - self.near), 0.0)
        return ids, depth.astype(np.float32)

    # ------------------------------------------------------------------ render passes
    def mask(self, vertices, faces, c2w) -> np.ndarray:
        """Coverage ``(H, W)`` float32 in [0, 1] (binary when ``supersample == 1``)."""
        zeros = np.zeros((len(_as_numpy(vertices, np.float32).reshape(-1, 3)), 3), np.float32)
        return self.render_attribute(vertices, faces, zeros, c2w)[..., 3]

    def colors(self, vertices, faces, vertex_colors, c2w, background=(1.0, 1.0, 1.0)) -> np.ndarray:
        """Per-vertex colours ``(V, 3)`` interpolated, unlit, over ``background``: ``(H, W, 3)`` float32."""
        out = self.render_attribute(vertices, faces, vertex_colors, c2w)
        alpha = out[..., 3:]
        return (out[..., :3] + (1.0 - alpha) * np.asarray(background, np.float32)).astype(np.float32)

    def normals(self, vertices, faces, c2w, smooth: bool = True) -> np.ndarray:
        """World-frame unit normals ``(H, W, 3)`` float32, zero where coverage < 0.5.

        ``smooth`` interpolates area-weighted vertex normals; otherwise each face shows its own
        normal (faces are split so no corner is shared).
        """
        v, f, n = self._normal_mesh(vertices, faces, smooth)
        out = self.render_attribute(v, f, n, c2w)
        norm = np.linalg.norm(out[..., :3], axis=-1, keepdims=True)
        unit = out[..., :3] / np.maximum(norm, 1e-8)
        return np.where(out[..., 3:] >= 0.5, unit, 0.0).astype(np.float32)

    def shaded(
        self,
        vertices,
        faces,
        vertex_colors,
        c2w,
        light_dir=None,
        ambient: float = 0.45,
        background=(1.0, 1.0, 1.0),
    ) -> tuple[np.ndarray, np.ndarray]:
        """Lambert + ambient shading of per-vertex albedo: returns ``rgb (H, W, 3)`` over
        ``background`` and ``alpha (H, W)``, both float32.

        ``c = albedo · (ambient + (1 - ambient) · max(0, n · l))`` per supersample, with ``n`` the
        interpolated vertex normal and ``l`` the unit world direction towards the light. The default
        light comes from the camera, a little above and to the camera's left.
        """
        c2w_t = _as_c2w(c2w)
        if light_dir is None:
            light_dir = (c2w_t[:3, 2] + 0.5 * c2w_t[:3, 1] - 0.3 * c2w_t[:3, 0]).numpy()
        light = np.asarray(light_dir, np.float64)
        with self.ctx:
            self._shade_prog["light"].value = tuple(float(c) for c in light / np.linalg.norm(light))
            self._shade_prog["ambient"].value = float(ambient)
        normals = vertex_normals(vertices, faces)
        self._draw(self._shade_prog, self._attr_fbo, vertices, faces, c2w, attr=vertex_colors, normal=normals)
        out = _box_downsample(self._read_attr(), self.supersample)
        alpha = out[..., 3:]
        rgb = out[..., :3] + (1.0 - alpha) * np.asarray(background, np.float32)
        return rgb.astype(np.float32), alpha[..., 0].copy()

    def labels(self, vertices, faces, face_labels, c2w) -> np.ndarray:
        """Per-face integer labels ``(F,)`` looked up through the face ids: ``(H, W)`` int32, 0 in the
        background (so labels should be ≥ 1 on the mesh)."""
        ids, _ = self.face_ids(vertices, faces, c2w)
        table = np.concatenate([[0], _as_numpy(face_labels, np.int32).reshape(-1)])
        return table[ids].astype(np.int32)

    @staticmethod
    def _normal_mesh(vertices, faces, smooth: bool):
        v = _as_numpy(vertices, np.float32).reshape(-1, 3)
        f = _as_numpy(faces, np.int64).reshape(-1, 3)
        if smooth:
            return v, f, vertex_normals(v, f)
        corners = v[f].reshape(-1, 3)
        fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
        fn = fn / np.maximum(np.linalg.norm(fn, axis=1, keepdims=True), 1e-12)
        return corners, np.arange(len(corners)).reshape(-1, 3), np.repeat(fn, 3, axis=0).astype(np.float32)
