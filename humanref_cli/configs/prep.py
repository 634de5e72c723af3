"""Settings of the prep stage: photo checks, crop, silhouette, body fit and which full models to use."""

from __future__ import annotations

from dataclasses import dataclass, field

from humanref_cli.configs.base import PRESETS
from humanref_cli.errors import UsageError


@dataclass(frozen=True)
class PrepConfig:
    res: int = field(default=512, metadata={"help": "Side of the square crop in pixels (method: 512)."})
    box_scale: float = field(
        default=0.9, metadata={"help": "Fraction of the crop side the person's larger box side covers."}
    )
    max_pixels: int = field(
        default=50_000_000,
        metadata={"help": "Refuse photos with more pixels (decompression bombs).", "semantic": False},
    )
    work_max_side: int = field(
        default=4096, metadata={"help": "Photos with a longer side are downscaled to this before processing."}
    )
    max_people: int = field(
        default=4, metadata={"help": "How many people to look for (mediapipe, one by one)."}
    )
    min_person_px: int = field(
        default=128, metadata={"help": "Smallest accepted person height in photo pixels."}
    )
    min_visibility: float = field(
        default=0.5, metadata={"help": "Keypoints with a lower mediapipe visibility count as not visible."}
    )
    erode_px: int = field(
        default=1,
        metadata={"help": "Silhouette erosion in pixels at twice the crop size (method: 1 at 1024)."},
    )
    mask_refine: bool = field(
        default=True,
        metadata={
            "help": "Snap mediapipe's mask to the photo's colour edges with a guided filter (decision 4m)."
        },
    )
    mask_refine_radius: float = field(
        default=0.0175,
        metadata={"help": "Guided filter window radius as a fraction of the person's height (8 px at 460)."},
    )
    mask_refine_eps: float = field(
        default=1e-4, metadata={"help": "Guided filter regulariser (colours in [0, 1]); larger is smoother."}
    )
    use_pose_heavy: bool = field(
        default=False,
        metadata={
            "help": "Use mediapipe's heavy landmark model for the keypoints when it was pulled (models pull "
            "pose_heavy). Off by default: its keypoints are closer to the truth on synthetic subjects, "
            "the body fits from them no better on average (docs/decisions.md 4z)."
        },
    )
    use_sam: bool = field(
        default=True, metadata={"help": "Use SAM for the silhouette when its weights exist."}
    )
    sam_min_agreement: float = field(
        default=0.5,
        metadata={
            "help": "SAM's mask is rejected (mediapipe's is used) when its IoU with mediapipe's is lower."
        },
    )
    use_marigold: bool = field(
        default=True, metadata={"help": "Use Marigold for the front normal map when its weights exist."}
    )
    use_segformer: bool = field(
        default=True, metadata={"help": "Use the SegFormer parser for the regions when its weights exist."}
    )
    use_blip: bool = field(default=True, metadata={"help": "Caption with BLIP when no --prompt is given."})
    fit_steps_keypoints: int = field(
        default=40, metadata={"help": "Body fit: L-BFGS evaluations on the keypoints alone."}
    )
    fit_steps_full: int = field(
        default=100, metadata={"help": "Body fit: L-BFGS evaluations with silhouette and shape."}
    )
    fit_w_sil: float = field(default=10.0, metadata={"help": "Body fit: silhouette weight."})
    fit_w_pose: float = field(default=0.05, metadata={"help": "Body fit: pose prior weight."})
    fit_w_shape: float = field(default=0.05, metadata={"help": "Body fit: phenotype prior weight."})
    fit_w_dir: float = field(
        default=1.0,
        metadata={
            "help": "Body fit: weight of the depth direction of limbs, shoulders and hips taken from "
            "mediapipe's world landmarks (which way an arm or a stride points; invisible from the front)."
        },
    )
    fit_w_upright: float = field(
        default=1.0, metadata={"help": "Body fit: prior against a lean towards or away from the camera."}
    )
    fit_w_shade: float = field(
        default=1.0,
        metadata={
            "help": "Body fit: weight of which leg is forward as read from the legs' shading (light from "
            "above brightens the leg swung forward; pairs of differently coloured legs are skipped; 0: off)."
        },
    )
    fit_min_age: float = field(
        default=0.4,
        metadata={
            "help": "Body fit: lowest value of anny's age phenotype (MakeHuman's scale: 0.1875 is 11 years, "
            "0.5 is 25, 1 is 90); 0.4 (about 20 years) keeps an adult's proportions, which loose clothes "
            "and hair otherwise pull towards a child's. 0 allows children (docs/decisions.md 4t)."
        },
    )
    fit_detector_offsets: bool = field(
        default=True,
        metadata={"help": "Body fit: move anny's landmarks to where mediapipe puts them (calibrated)."},
    )
    fit_depth_calibration: bool = field(
        default=True,
        metadata={
            "help": "Body fit: correct and weight mediapipe's depth per segment by how well it matched "
            "the truth on synthetic subjects (false: take it as it is, all segments alike)."
        },
    )
    fit_arm_starts: bool = field(
        default=True,
        metadata={
            "help": "Body fit: also start from each arm bent across the body and, when mediapipe points the "
            "forearms at the camera, both arms raised forward; a bent start goes on when its loss is lower "
            "and it fits the keypoints better, the forward one when its loss is lower (from rest the fit "
            "finds neither pose)."
        },
    )
    fit_min_iou: float = field(
        default=0.8, metadata={"help": "Warn loudly when the fitted body's silhouette IoU is below this."}
    )

    def __post_init__(self):
        if not 64 <= self.res <= 4096:
            raise UsageError(f"prep.res must be in [64, 4096], got {self.res}")
        if not 0.1 <= self.box_scale <= 1.0:
            raise UsageError(f"prep.box_scale must be in [0.1, 1], got {self.box_scale}")
        if self.max_people < 1:
            raise UsageError(f"prep.max_people must be at least 1, got {self.max_people}")
        if not 0 < self.mask_refine_radius <= 0.2:
            raise UsageError(f"prep.mask_refine_radius must be in (0, 0.2], got {self.mask_refine_radius}")
        if self.mask_refine_eps <= 0:
            raise UsageError(f"prep.mask_refine_eps must be > 0, got {self.mask_refine_eps}")
        if not 0.0 <= self.fit_min_age <= 1.0:
            raise UsageError(f"prep.fit_min_age must be in [0, 1], got {self.fit_min_age}")
        for name in ("fit_w_sil", "fit_w_pose", "fit_w_shape", "fit_w_dir", "fit_w_upright", "fit_w_shade"):
            if getattr(self, name) < 0:
                raise UsageError(f"prep.{name} must be >= 0 (a weight), got {getattr(self, name)}")


def preset(name: str) -> PrepConfig:
    """Prep settings of a preset: all three use the defaults. ``cpu`` used to fit the body with fewer
    evaluations (30 + 60); with the silhouette weighted as now that stopped short of the fit (seeds 0-7:
    1.34 against 1.11 cm, docs/decisions.md 4n), and prep stays under 25 s a photo on 2 cores anyway."""
    if name not in PRESETS:
        raise UsageError(f"unknown preset {name!r}", hint=f"use one of {', '.join(PRESETS)}")
    return PrepConfig()
