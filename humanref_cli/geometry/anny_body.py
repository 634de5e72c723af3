"""The anny parametric body as the human prior: loading, a differentiable forward pass in the world frame,
body-part labels and MediaPipe landmark correspondences.

anny's mesh is z-up, in metres, facing -y (the person's left is +x). The world frame of ``camera.py``
has the person facing +x with the left at +y, so an anny point ``p`` maps to the world as

    x_world = s · R_g · R_z(+90°) · p + t,      R_z(+90°) (x, y, z) = (-y, x, z),

with ``R_g`` a global rotation (axis-angle, world axes, about the anny origin, which is the pelvis),
``s`` a uniform scale and ``t`` a translation. Joint rotations are axis-angle vectors in anny's
``local-ref`` parameterisation: each bone's rotation relative to its parent, in world-aligned anny
axes (x = person's left, y = back, z = up). For a hanging arm or leg, ``-x`` swings it forward,
``-y`` raises the left arm sideways (``+y`` the right one), and ``+x`` on ``lowerleg01`` bends a knee.

Body parts (per face, the groups of method.md §2.4 that a naked body allows):
``1 head`` (anny's head segment with eyes, mouth cavity and tongue), ``2 upper`` (torso, neck, arms,
hands), ``3 lower`` (pelvis and thighs), ``4 feet`` (shins and feet). anny's UV segmentation gives
head, hands and feet; the rest of the ``body`` segment is split by skinning weights: a face goes to
``lower`` or ``feet`` when most of its vertices' weight lies on the pelvis/thigh bones or on the
shin/foot bones, and to ``upper`` otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

PHENOTYPES = ("gender", "age", "muscle", "weight", "height", "proportions")
"""anny phenotype keys, each in [0, 1] (0.5 = average adult)."""

POSE_BONES = (
    "spine01",
    "spine03",
    "spine05",
    "neck01",
    "head",
    "clavicle.L",
    "clavicle.R",
    "upperarm01.L",
    "upperarm01.R",
    "lowerarm01.L",
    "lowerarm01.R",
    "wrist.L",
    "wrist.R",
    "upperleg01.L",
    "upperleg01.R",
    "lowerleg01.L",
    "lowerleg01.R",
    "foot.L",
    "foot.R",
)
"""Bones with a free rotation in :class:`BodyParams`; every other bone keeps its rest orientation."""

PART_NAMES = ("background", "head", "upper", "lower", "feet")

MEDIAPIPE_TO_ANNY = {
    2: "eye.L",
    5: "eye.R",
    11: "upperarm01.L",
    12: "upperarm01.R",
    13: "lowerarm01.L",
    14: "lowerarm01.R",
    15: "wrist.L",
    16: "wrist.R",
    17: "finger5-1.L",
    18: "finger5-1.R",
    19: "finger2-1.L",
    20: "finger2-1.R",
    21: "finger1-2.L",
    22: "finger1-2.R",
    23: "upperleg01.L",
    24: "upperleg01.R",
    25: "lowerleg01.L",
    26: "lowerleg01.R",
    27: "foot.L",
    28: "foot.R",
}
"""MediaPipe Pose landmark index -> anny bone whose head (pose translation) is that landmark.
Person's left = ``.L``. Hand landmarks 17-22 (pinky, index, thumb knuckles) are approximate."""

LANDMARK_BONES = {
    **{k: "head" for k in range(11)},
    **MEDIAPIPE_TO_ANNY,
    29: "foot.L",
    30: "foot.R",
    31: "foot.L",
    32: "foot.R",
}
"""The bone each MediaPipe landmark moves rigidly with (its frame for detector offsets)."""

MEDIAPIPE_VERTEX_LANDMARKS = (0, 1, 3, 4, 6, 7, 8, 9, 10, 29, 30, 31, 32)
"""MediaPipe landmarks read from a mesh vertex (nose, eye corners, ears, mouth corners, heels,
toes); the vertex is chosen once on the rest mesh by :func:`_landmark_vertices`."""

_LOWER_BONES = ("root", "pelvis.L", "pelvis.R")
_LOWER_BONE_PREFIXES = ("upperleg",)
_FEET_BONE_PREFIXES = ("lowerleg", "foot", "toe")
_HEAD_SEGMENTS = (
    "head",
    "eye_back.L",
    "eye_front.L",
    "eye_back.R",
    "eye_front.R",
    "eye_cavity.L",
    "eye_cavity.R",
    "mouth_cavity",
    "tongue",
)


@dataclass
class AnnyBody:
    """A loaded anny model plus what humanref derives from its topology (fixed for every shape).

    ``faces (F, 3)`` int64 triangles, ``face_parts (F,)`` and ``vertex_parts (V,)`` int64 in 1..4
    (module docstring), ``landmark_vertices`` MediaPipe index -> vertex index, ``bone_index`` bone
    label -> row of ``bone_poses``, ``landmark_bone_rows (33,)`` the ``bone_poses`` row of each
    landmark's :data:`LANDMARK_BONES` bone.
    """

    model: torch.nn.Module
    faces: torch.Tensor
    face_parts: torch.Tensor
    vertex_parts: torch.Tensor
    landmark_vertices: dict[int, int]
    bone_index: dict[str, int]
    landmark_bone_rows: torch.Tensor

    @property
    def device(self) -> torch.device:
        return self.faces.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype


@dataclass
class BodyOutput:
    """``vertices (V, 3)`` world frame; ``faces (F, 3)`` int64; ``joints`` bone label -> ``(3,)`` world
    position of the bone head; ``landmarks (33, 3)`` world MediaPipe landmarks with ``landmark_valid
    (33,)`` bool (False where no correspondence exists; those rows are 0); ``landmark_frames (33, 3, 3)``
    ``scale · R_world · R_bone`` of the bone each landmark moves with (:data:`LANDMARK_BONES`), so a
    point fixed in that bone's frame at anny offset ``o`` sits at ``landmarks + landmark_frames @ o``."""

    vertices: torch.Tensor
    faces: torch.Tensor
    joints: dict[str, torch.Tensor]
    landmarks: torch.Tensor
    landmark_valid: torch.Tensor
    landmark_frames: torch.Tensor


@dataclass
class BodyParams:
    """A body as plain numbers (JSON-friendly): phenotype values in [0, 1], per-bone axis-angle
    rotations (radians, ``local-ref`` anny axes, bones of :data:`POSE_BONES`; missing = rest), the
    global axis-angle rotation (world axes), the uniform scale and the world translation."""

    phenotype: dict[str, float] = field(default_factory=lambda: {k: 0.5 for k in PHENOTYPES})
    pose: dict[str, list[float]] = field(default_factory=dict)
    global_rotation: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    scale: float = 1.0
    translation: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> BodyParams:
        unknown = set(d.get("pose", {})) - set(POSE_BONES)
        if unknown:
            raise ValueError(f"unknown pose bones {sorted(unknown)}; allowed: {POSE_BONES}")
        return BodyParams(
            phenotype={k: float(d["phenotype"].get(k, 0.5)) for k in PHENOTYPES},
            pose={k: [float(x) for x in v] for k, v in d.get("pose", {}).items()},
            global_rotation=[float(x) for x in d.get("global_rotation", (0.0, 0.0, 0.0))],
            scale=float(d.get("scale", 1.0)),
            translation=[float(x) for x in d.get("translation", (0.0, 0.0, 0.0))],
        )

    def tensors(self, device="cpu", dtype=torch.float32) -> dict[str, torch.Tensor]:
        """The keyword tensors of :func:`body_forward`: ``phenotype (6,)``, ``joint_rotvecs (J, 3)``
        (rows in :data:`POSE_BONES` order), ``global_rotvec (3,)``, ``scale ()``, ``translation (3,)``."""
        kw = dict(device=device, dtype=dtype)
        rot = torch.zeros(len(POSE_BONES), 3, **kw)
        for k, v in self.pose.items():
            rot[POSE_BONES.index(k)] = torch.tensor(v, **kw)
        return dict(
            phenotype=torch.tensor([self.phenotype[k] for k in PHENOTYPES], **kw),
            joint_rotvecs=rot,
            global_rotvec=torch.tensor(self.global_rotation, **kw),
            scale=torch.tensor(float(self.scale), **kw),
            translation=torch.tensor(self.translation, **kw),
        )


class BodyFitParams(torch.nn.Module):
    """Trainable body parameters for fitting: ``phenotype (6,)`` (clamped to ``[phenotype_min, 1]`` in
    the forward pass; ``phenotype_min`` maps :data:`PHENOTYPES` keys to lower bounds, default 0),
    ``joint_rotvecs (J, 3)``, ``global_rotvec (3,)``, ``log_scale ()``, ``translation (3,)``."""

    def __init__(
        self,
        params: BodyParams | None = None,
        device="cpu",
        dtype=torch.float32,
        phenotype_min: dict[str, float] | None = None,
    ):
        super().__init__()
        t = (params or BodyParams()).tensors(device, dtype)
        low = [float((phenotype_min or {}).get(k, 0.0)) for k in PHENOTYPES]
        self.register_buffer("phenotype_min", torch.tensor(low, device=device, dtype=dtype))
        self.phenotype = torch.nn.Parameter(t["phenotype"])
        self.joint_rotvecs = torch.nn.Parameter(t["joint_rotvecs"])
        self.global_rotvec = torch.nn.Parameter(t["global_rotvec"])
        self.log_scale = torch.nn.Parameter(t["scale"].log())
        self.translation = torch.nn.Parameter(t["translation"])

    def forward(self, body: AnnyBody) -> BodyOutput:
        return body_forward(
            body,
            self.bounded_phenotype(),
            self.joint_rotvecs,
            self.global_rotvec,
            self.log_scale.exp(),
            self.translation,
        )

    def bounded_phenotype(self) -> torch.Tensor:
        """``phenotype (6,)`` clamped to ``[phenotype_min, 1]`` (no gradient beyond a bound)."""
        return torch.maximum(self.phenotype, self.phenotype_min).clamp(max=1.0)

    def to_params(self) -> BodyParams:
        rot = self.joint_rotvecs.detach().cpu().double()
        pheno = self.bounded_phenotype().detach().cpu()
        return BodyParams(
            phenotype={k: float(v) for k, v in zip(PHENOTYPES, pheno, strict=True)},
            pose={b: rot[i].tolist() for i, b in enumerate(POSE_BONES) if bool(rot[i].abs().max() > 0)},
            global_rotation=self.global_rotvec.detach().cpu().double().tolist(),
            scale=float(self.log_scale.detach().exp()),
            translation=self.translation.detach().cpu().double().tolist(),
        )


ANNY_FIRST_BUILD = (
    "building the Anny body model's cache once: about 3 minutes and ~1 GB under {path}; "
    "later runs load it in about a second"
)


def anny_cache_ready() -> bool:
    """Whether anny's one-time model cache exists (its first construction takes ~3 minutes without it)."""
    return any(_anny_cache_path().glob("**/build_model_data_*"))


def _anny_cache_path() -> Path:
    from anny.paths import get_anny_cache_path

    return Path(get_anny_cache_path())


def load_anny(
    device="cpu", dtype=torch.float32, on_first_build: Callable[[str], None] | None = None
) -> AnnyBody:
    """Build anny (``local_changes="default"``, dense torch skinning: differentiable, deterministic)
    and derive the part labels and landmark vertices. ~1-3 s (mostly imports) once anny's cache exists;
    before that, ``on_first_build`` (e.g. a progress logger) is told about the ~3 minute wait.

    The caller keeps the returned object; nothing is cached at module level.
    """
    import anny

    if on_first_build is not None and not anny_cache_ready():
        on_first_build(ANNY_FIRST_BUILD.format(path=_anny_cache_path()))

    model = anny.Anny(local_changes="default", skinning_method="lbs").to(device=device, dtype=dtype)
    model.requires_grad_(False)
    faces = model.faces.to(device=device, dtype=torch.int64)
    if faces.shape[1] != 3:
        faces = model.get_triangular_faces().to(device)
    bone_index = {b: i for i, b in enumerate(model.bone_labels)}
    with torch.no_grad():
        rest = model()["vertices"][0]
    face_parts, vertex_parts = _part_labels(model, faces, bone_index)
    landmark_vertices = _landmark_vertices(model, rest, faces, bone_index)
    rows = torch.tensor([bone_index[LANDMARK_BONES[k]] for k in range(33)], device=faces.device)
    return AnnyBody(model, faces, face_parts, vertex_parts, landmark_vertices, bone_index, rows)


def _part_labels(model, faces: torch.Tensor, bone_index: dict[str, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``face_parts (F,)`` and ``vertex_parts (V,)`` in 1..4 (module docstring for the rule)."""
    from anny.face_segmentation import get_face_segmentation_mask

    n_bones = len(bone_index)
    lower = torch.zeros(n_bones, dtype=torch.bool)
    feet = torch.zeros(n_bones, dtype=torch.bool)
    for b, i in bone_index.items():
        lower[i] = b in _LOWER_BONES or b.startswith(_LOWER_BONE_PREFIXES)
        feet[i] = b.startswith(_FEET_BONE_PREFIXES)
    w = model.vertex_bone_weights.detach().cpu().double()  # (V, K)
    idx = model.vertex_bone_indices.detach().cpu()
    w_lower = (w * lower[idx]).sum(1)
    w_feet = (w * feet[idx]).sum(1)
    w_upper = w.sum(1) - w_lower - w_feet
    vertex_parts = torch.stack([w_upper, w_lower, w_feet], 1).argmax(1) + 2  # 2 upper, 3 lower, 4 feet

    f = faces.cpu()
    face_w = torch.stack([w_upper[f].sum(1), w_lower[f].sum(1), w_feet[f].sum(1)], 1)
    face_parts = face_w.argmax(1) + 2

    def seg(labels):
        return get_face_segmentation_mask(model, list(labels)).cpu()

    face_parts[seg(("hand.L", "hand.R"))] = 2
    face_parts[seg(("foot.L", "foot.R"))] = 4
    face_parts[seg(_HEAD_SEGMENTS)] = 1
    # vertices of segmented faces follow the segmentation (head last: it wins at the neck seam)
    for part in (2, 4, 1):
        vertex_parts[f[face_parts == part].reshape(-1)] = part
    return face_parts.to(faces.device), vertex_parts.to(faces.device)


def _landmark_vertices(
    model, rest: torch.Tensor, faces: torch.Tensor, bone_index: dict[str, int]
) -> dict[int, int]:
    """Pick the vertex of each :data:`MEDIAPIPE_VERTEX_LANDMARKS` entry on the rest mesh (anny frame:
    x left, y back, z up): the nose tip is the most forward midline head vertex between the eyes and
    the mouth; ear = the most lateral head vertex near eye height; eye corners and mouth corners =
    the most medial/lateral vertices of the eyeball fronts and of the mouth cavity; heel/toe = the
    rearmost/foremost vertex of each foot segment."""
    from anny.face_segmentation import get_face_segmentation_mask

    v = rest.detach().cpu().double()
    f = faces.cpu()

    def seg_vertices(label: str) -> torch.Tensor:
        return torch.unique(f[get_face_segmentation_mask(model, [label]).cpu()].reshape(-1))

    def pick(candidates: torch.Tensor, score: torch.Tensor) -> int:
        return int(candidates[score[candidates].argmax()])

    with torch.no_grad():
        eye_z = float(model()["bone_poses"][0, bone_index["eye.L"], 2, 3])
    head = seg_vertices("head")
    x, y, z = v[:, 0], v[:, 1], v[:, 2]
    mid_face = head[(x[head].abs() < 0.01) & (z[head] < eye_z - 0.01) & (z[head] > eye_z - 0.08)]
    near_eyes = head[(z[head] - eye_z).abs() < 0.03]
    out = {0: pick(mid_face, -y), 7: pick(near_eyes, x), 8: pick(near_eyes, -x)}
    eye_l, eye_r, mouth = (
        seg_vertices("eye_front.L"),
        seg_vertices("eye_front.R"),
        seg_vertices("mouth_cavity"),
    )
    out.update({1: pick(eye_l, -x), 3: pick(eye_l, x), 4: pick(eye_r, x), 6: pick(eye_r, -x)})
    out.update({9: pick(mouth, x), 10: pick(mouth, -x)})
    foot_l, foot_r = seg_vertices("foot.L"), seg_vertices("foot.R")
    out.update({29: pick(foot_l, y - z), 30: pick(foot_r, y - z), 31: pick(foot_l, -y), 32: pick(foot_r, -y)})
    return out


def anny_to_world_rotation(global_rotvec: torch.Tensor) -> torch.Tensor:
    """``R_g · R_z(+90°)`` ``(3, 3)``: the rotation taking anny axes to world axes."""
    import roma

    rz = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=global_rotvec.dtype)
    return roma.rotvec_to_rotmat(global_rotvec) @ rz.to(global_rotvec.device)


def body_forward(
    body: AnnyBody,
    phenotype: torch.Tensor,
    joint_rotvecs: torch.Tensor,
    global_rotvec: torch.Tensor,
    scale: torch.Tensor,
    translation: torch.Tensor,
) -> BodyOutput:
    """Posed anny body in the world frame, differentiable w.r.t. every input.

    phenotype ``(6,)`` in :data:`PHENOTYPES` order (clamped to [0, 1]); joint_rotvecs ``(J, 3)`` in
    :data:`POSE_BONES` order; global_rotvec ``(3,)``; scale ``()``; translation ``(3,)``.
    ``x_world = scale · R_g · R_z(90°) · x_anny + translation`` for vertices and joints alike.
    """
    import roma

    model = body.model
    dtype = model.dtype
    n_bones, device = len(body.bone_index), body.device
    rows = torch.tensor([body.bone_index[b] for b in POSE_BONES], device=device)
    rot = torch.eye(3, dtype=dtype, device=device).repeat(n_bones, 1, 1)
    rot = rot.index_copy(0, rows, roma.rotvec_to_rotmat(joint_rotvecs.to(dtype)))  # (B, 3, 3)
    top = torch.cat([rot, torch.zeros(n_bones, 3, 1, dtype=dtype, device=device)], dim=2)
    bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=dtype, device=device).expand(n_bones, 1, 4)
    delta = torch.cat([top, bottom], dim=1)[None]  # (1, B, 4, 4) local-ref deltas
    pheno = phenotype.to(dtype).clamp(0.0, 1.0).reshape(1, -1)
    out = model(pose_parameters=delta, phenotype_kwargs=pheno)
    r = anny_to_world_rotation(global_rotvec.to(dtype))
    s, t = scale.to(dtype), translation.to(dtype)
    vertices = s * out["vertices"][0] @ r.T + t
    heads = s * out["bone_poses"][0, :, :3, 3] @ r.T + t  # (B, 3)
    joints = {b: heads[i] for b, i in body.bone_index.items()}
    zero = torch.zeros(3, dtype=dtype, device=device)
    rows33 = [zero] * 33
    for k, b in MEDIAPIPE_TO_ANNY.items():
        rows33[k] = heads[body.bone_index[b]]
    for k, vi in body.landmark_vertices.items():
        rows33[k] = vertices[vi]
    landmarks = torch.stack(rows33)  # (33, 3)
    valid = torch.zeros(33, dtype=torch.bool, device=device)
    valid[list(MEDIAPIPE_TO_ANNY) + list(body.landmark_vertices)] = True
    frames = s * r @ out["bone_poses"][0, body.landmark_bone_rows, :3, :3]  # (33, 3, 3)
    return BodyOutput(vertices, body.faces, joints, landmarks, valid, frames)


def forward_params(body: AnnyBody, params: BodyParams) -> BodyOutput:
    """:func:`body_forward` of a :class:`BodyParams`."""
    return body_forward(body, **params.tensors(body.device, body.dtype))


def fit_to_crop(vertices: torch.Tensor, fill: float = 0.9) -> tuple[float, torch.Tensor]:
    """Scale and translation that frame a world-frame body in the front view.

    Returns ``(s, t)`` such that ``s · vertices + t`` has its front-view box (world y = image
    right, z = image up) centred at 0 with its larger side ``2 · fill`` (1.8: 90% of the [-1, 1]
    crop), and its depth extent (world x) centred at 0. To update :class:`BodyParams` that produced
    ``vertices``: ``scale ← s · scale``, ``translation ← s · translation + t``.
    """
    v = vertices.detach().double()
    lo, hi = v.min(0).values, v.max(0).values
    s = 2.0 * fill / float(max(hi[1] - lo[1], hi[2] - lo[2]))
    t = -s * (lo + hi) / 2
    return s, t.to(vertices.dtype)
