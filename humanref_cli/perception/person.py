"""People and their 33 keypoints, from mediapipe 0.10.21 Pose (its bundled model, offline).

Two landmark models: ``full`` (bundled in the wheel, the default) and ``heavy`` (mediapipe's most
accurate, not bundled: ``humanref models pull pose_heavy``, installed by :mod:`pose_heavy`; measured on
synthetic subjects its elbows are 30% closer to the truth, docs/decisions.md 4z).

The legacy Pose solution finds one person per call. To see several, we run it again on the photo with
each found person painted out (their segmentation mask, dilated, filled with the image's mean colour)
until it finds nobody new or ``max_people`` is reached. People are sorted by box area, largest first,
so ``--person 0`` (the default) is the largest and ``--person N`` picks another.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from dataclasses import dataclass

import numpy as np

from humanref_cli.errors import UsageError

MEDIAPIPE_ID = "embedded:mediapipe-pose-0.10.21"
# mediapipe's ``model_complexity`` of each landmark model humanref uses (0, "lite", is not used).
POSE_MODELS = {"full": 1, "heavy": 2}
KNEES = (25, 26)
ANKLES = (27, 28)
# How far (a fraction of the person's height) a knee or ankle may sit off mediapipe's own mask and still
# count as seen: 0 on every synthetic subject and real full-body photo tried; 0.020 for basketball2.png's
# nearer man, cut off at the hips, whose legs mediapipe guesses below him (docs/decisions.md 4v).
MASK_TOLERANCE = 0.01
# A person found again on the painted-out photo with more of their mask than this in the paint is not new.
PAINTED_FRACTION = 0.5


@dataclass(frozen=True)
class Person:
    """One detected person, in pixels of the image it was detected in.

    ``keypoints (33, 2)`` pixel coordinates ``(u, v)`` (pixel centres at ``i + 0.5``), ``visibility (33,)``,
    ``depth (33,)`` mediapipe's relative z scaled to pixels, ``world (33, 3)`` metres (hip-centred),
    ``mask (H, W)`` float32 segmentation probability or None, ``box (x0, y0, x1, y1)``.
    """

    keypoints: np.ndarray
    visibility: np.ndarray
    depth: np.ndarray
    world: np.ndarray | None
    mask: np.ndarray | None
    box: tuple[float, float, float, float]

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.box
        return max(x1 - x0, 0.0) * max(y1 - y0, 0.0)

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]


def _pose_once(pose, rgb: np.ndarray) -> Person | None:
    result = pose.process(rgb)
    if result.pose_landmarks is None:
        return None
    h, w = rgb.shape[:2]
    lm = result.pose_landmarks.landmark
    kp = np.array([[p.x * w, p.y * h] for p in lm], dtype=np.float32)
    vis = np.array([p.visibility for p in lm], dtype=np.float32)
    depth = np.array([p.z * w for p in lm], dtype=np.float32)
    world = None
    if result.pose_world_landmarks is not None:
        world = np.array([[p.x, p.y, p.z] for p in result.pose_world_landmarks.landmark], dtype=np.float32)
    mask = None if result.segmentation_mask is None else np.asarray(result.segmentation_mask, np.float32)
    return Person(kp, vis, depth, world, mask, person_box(kp, vis, mask, (h, w)))


def person_box(
    keypoints: np.ndarray, visibility: np.ndarray, mask: np.ndarray | None, size: tuple[int, int]
) -> tuple[float, float, float, float]:
    """Box ``(x0, y0, x1, y1)`` (x1/y1 exclusive) of the mask's pixels united with the visible in-frame
    keypoints. Without a mask the keypoint box is grown by 10% of its height on top, since the
    highest landmarks (eyes, ears) sit below the top of the head."""
    h, w = size
    inside = (visibility >= 0.5) & in_frame(keypoints, size)
    pts = keypoints[inside] if inside.any() else keypoints
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    if mask is not None and (mask > 0.5).any():
        ys, xs = np.nonzero(mask > 0.5)
        x0, y0 = min(x0, xs.min()), min(y0, ys.min())
        x1, y1 = max(x1, xs.max() + 1), max(y1, ys.max() + 1)
    else:
        y0 -= 0.1 * (y1 - y0)
    return (float(max(x0, 0)), float(max(y0, 0)), float(min(x1, w)), float(min(y1, h)))


def in_frame(keypoints: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(33,)`` bool: keypoint lies inside the image."""
    h, w = size
    return (keypoints[:, 0] >= 0) & (keypoints[:, 0] < w) & (keypoints[:, 1] >= 0) & (keypoints[:, 1] < h)


def _box_iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _paint_out(rgb: np.ndarray, person: Person) -> tuple[np.ndarray, np.ndarray]:
    """Copy of ``rgb`` with ``person`` replaced by the mean colour (mask dilated by 5% of its height),
    and the painted region ``(H, W)`` bool."""
    import cv2

    out = rgb.copy()
    if person.mask is not None and (person.mask > 0.5).any():
        k = max(3, int(0.05 * person.height) | 1)
        region = cv2.dilate((person.mask > 0.5).astype(np.uint8), np.ones((k, k), np.uint8)) > 0
    else:
        x0, y0, x1, y1 = (int(round(v)) for v in person.box)
        region = np.zeros(rgb.shape[:2], bool)
        region[y0:y1, x0:x1] = True
    out[region] = rgb.reshape(-1, 3).mean(axis=0).astype(np.uint8)
    return out, region


def _seen_before(person: Person, people: list[Person], painted: np.ndarray) -> bool:
    """Whether a detection on the painted-out photo is someone found already: its box overlaps a found
    person's (IoU > 0.5), or most of its mask lies where found people were painted out. The heavy model
    sees a faint upper body in the flat paint (synthetic seed 1: a box inside the person's, IoU 0.28,
    mean visibility 0.48, its mask 99% in the paint); nobody can be seen in a flat colour."""
    if any(_box_iou(person.box, p.box) > 0.5 for p in people):
        return True
    if person.mask is None or not painted.any():
        return False
    mine = person.mask > 0.5
    return bool(mine.any()) and float(painted[mine].mean()) > PAINTED_FRACTION


_NATIVE_NOISE = re.compile(
    r"^(INFO: Created TensorFlow Lite|WARNING: All log messages before absl|[IW]\d{4} \d\d:\d\d:\d\d)"
)


@contextlib.contextmanager
def _filtered_native_stderr():
    """Route file descriptor 2 to a temporary file while mediapipe runs, then pass on every line that
    is not one of its known start-up INFO/WARNING lines. Its C++ and TFLite loggers write to the
    descriptor directly (``GLOG_minloglevel`` does not silence the absl lines), so ``sys.stderr``
    redirection would not catch them."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as log:
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            log.seek(0)
            kept = [
                line
                for line in log.read().decode("utf-8", "replace").splitlines()
                if line.strip() and not _NATIVE_NOISE.match(line)
            ]
            if kept:
                print("\n".join(kept), file=sys.stderr)


def detector_id(model: str = "full") -> str:
    """What detected the keypoints, for manifests: the bundled model's id, ``…+heavy`` for the heavy one."""
    return MEDIAPIPE_ID if model == "full" else f"{MEDIAPIPE_ID}+{model}"


def detect_people(rgb: np.ndarray, max_people: int = 4, model: str = "full") -> list[Person]:
    """All people mediapipe finds in ``rgb (H, W, 3)`` uint8, largest box first (maybe empty).

    ``model`` is a key of ``POSE_MODELS``; ``heavy`` must be installed first (``pose_heavy.install``),
    or mediapipe tries to download it."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    people: list[Person] = []
    image = np.ascontiguousarray(rgb)
    with _filtered_native_stderr():
        import mediapipe as mp

        pose_cfg = {
            "static_image_mode": True,
            "model_complexity": POSE_MODELS[model],
            "enable_segmentation": True,
        }
        with mp.solutions.pose.Pose(**pose_cfg) as pose:
            painted = np.zeros(image.shape[:2], bool)
            for _ in range(max_people):
                person = _pose_once(pose, image)
                if person is None or _seen_before(person, people, painted):
                    break
                people.append(person)
                image, region = _paint_out(image, person)
                painted |= region
    return sorted(people, key=lambda p: p.area, reverse=True)


def select_person(
    people: list[Person],
    image_name: str,
    size: tuple[int, int],
    *,
    index: int | None = None,
    min_height_px: float = 128,
    allow_partial: bool = False,
    min_visibility: float = 0.5,
) -> tuple[Person, list[str]]:
    """Pick the person to reconstruct and check they are usable; returns it and warnings to print.

    Raises ``UsageError`` (exit 2) when nobody is found, the index is out of range, the person is
    smaller than ``min_height_px`` or (unless ``allow_partial``) no knee or no ankle is visible.
    """
    warnings: list[str] = []
    if not people:
        raise UsageError(
            f"no person found in {image_name}", hint="use a photo in which one person is clearly visible"
        )
    if index is None:
        index = 0
        if len(people) > 1:
            warnings.append(
                f"{len(people)} people found in {image_name}; using the largest (--person 0); "
                f"pick another with --person 1..{len(people) - 1}"
            )
    elif not 0 <= index < len(people):
        raise UsageError(
            f"--person {index} is out of range: {len(people)} people found in {image_name}",
            hint=f"use --person 0..{len(people) - 1} (0 is the largest)",
        )
    person = people[index]
    if person.height < min_height_px:
        raise UsageError(
            f"the person in {image_name} is too small ({person.height:.0f} px tall, "
            f"need {min_height_px:.0f})",
            hint="use a photo in which the person is larger, or crop the photo around them",
        )
    if not legs_visible(person, size, min_visibility):
        if not allow_partial:
            others = [i for i, p in enumerate(people) if i != index and legs_visible(p, size, min_visibility)]
            also = f", or --person {others[0]} (seen head to toe)" if others else ""
            raise UsageError(
                f"the person in {image_name} is not fully visible (knees/feet are cut off or hidden); "
                "a full-body photo is needed",
                hint=f"use a head-to-toe photo, or pass --allow-partial to try anyway{also}",
            )
        warnings.append("knees/feet are not visible: fitting a partial body (--allow-partial)")
    return person, warnings


def legs_visible(person: Person, size: tuple[int, int], min_visibility: float = 0.5) -> bool:
    """A knee and an ankle are seen: visibility >= ``min_visibility``, inside the image and, when the
    person has a segmentation mask, on it (:func:`on_mask`). mediapipe places the legs of a person cut
    off at the hips below the body with visibility up to ~0.8; its own mask does not follow them there."""
    ok = (person.visibility >= min_visibility) & in_frame(person.keypoints, size)
    if person.mask is not None:
        # at least a pixel: a landmark inside a mask pixel is within 0.71 px of its centre
        ok &= on_mask(person.keypoints, person.mask, max(MASK_TOLERANCE * person.height, 1.0))
    return bool(ok[list(KNEES)].any() and ok[list(ANKLES)].any())


def on_mask(keypoints: np.ndarray, mask: np.ndarray, radius: float) -> np.ndarray:
    """``(33,)`` bool: a pixel of ``mask (H, W)`` (probability > 0.5) lies within ``radius`` px of the
    keypoint ``(u, v)`` (pixel centres at ``i + 0.5``). False for keypoints outside the image."""
    h, w = mask.shape
    r = int(np.ceil(radius))
    out = np.zeros(len(keypoints), bool)
    for i, (u, v) in enumerate(keypoints):
        if not (0 <= u < w and 0 <= v < h):
            continue
        x0, y0 = max(int(u) - r, 0), max(int(v) - r, 0)
        window = mask[y0 : int(v) + r + 1, x0 : int(u) + r + 1] > 0.5
        ys, xs = np.nonzero(window)
        out[i] = bool((((xs + x0 + 0.5 - u) ** 2 + (ys + y0 + 0.5 - v) ** 2) <= radius**2).any())
    return out
