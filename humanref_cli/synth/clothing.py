"""Procedural clothing-like albedo on the anny mesh, with the matching human-parsing labels.

Every vertex gets a material (hair, skin, shirt, trousers, shoes) from its place on the *unposed*
body, so patterns and garment edges follow the body when it is posed:

- arm and leg vertices (most skinning weight on the arm / leg bones) get a coordinate ``t`` along
  the shoulder->wrist or hip->ankle segment; a sleeve covers ``t < sleeve``, trousers ``t < legs``,
  shoes ``t > 0.96``;
- torso vertices are shirt above the waist height, trousers below; the neck above the collar is skin;
- head vertices are hair above the hairline or behind the ears above the nape line, skin otherwise.

Parsing labels follow LIP's grouping (method.md §2.4): hair and face -> head (1); shirt, arms, hands
and neck -> upper (2); trousers -> lower (3); bare legs and shoes -> feet (4).
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np
import torch

from humanref_cli.geometry.anny_body import PHENOTYPES, AnnyBody

HAIR, SKIN, SHIRT, TROUSERS, LEG_SKIN, SHOES, FACE = range(7)
MATERIAL_PARSING = np.array([1, 2, 2, 3, 4, 4, 1], dtype=np.int64)  # material -> parsing label
PATTERNS = ("solid", "hstripes", "vstripes", "checks")

_SKIN_TONES = np.array(
    [[0.96, 0.80, 0.68], [0.88, 0.68, 0.54], [0.74, 0.54, 0.40], [0.54, 0.37, 0.25], [0.34, 0.22, 0.15]]
)
_HAIR_COLOURS = np.array(
    [
        [0.05, 0.04, 0.04],
        [0.20, 0.12, 0.07],
        [0.42, 0.27, 0.15],
        [0.82, 0.68, 0.42],
        [0.55, 0.24, 0.10],
        [0.6] * 3,
    ]
)


@dataclass(frozen=True)
class Outfit:
    """Colours (RGB in [0, 1]) and garment geometry; lengths are fractions along a limb."""

    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    hairline: float  # metres above the eyes
    nape: float  # metres below the eyes where the back hair ends
    shirt: tuple[float, float, float]
    shirt_alt: tuple[float, float, float]
    shirt_pattern: str
    pattern_period: float  # metres
    sleeve: float
    collar: float  # metres below the neck joint
    waist: float  # metres above the hip joints
    trousers: tuple[float, float, float]
    trousers_alt: tuple[float, float, float]
    trousers_pattern: str
    legs: float
    shoes: tuple[float, float, float]

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def _colour(rng: np.random.Generator, sat: tuple[float, float], val: tuple[float, float]) -> tuple:
    rgb = colorsys.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(*sat), rng.uniform(*val))
    return tuple(round(float(c), 4) for c in rgb)


def sample_outfit(rng: np.random.Generator) -> Outfit:
    u = rng.uniform
    tone = u(0, len(_SKIN_TONES) - 1)
    lo = int(tone)
    skin = _SKIN_TONES[lo] + (tone - lo) * (_SKIN_TONES[min(lo + 1, len(_SKIN_TONES) - 1)] - _SKIN_TONES[lo])
    jeans = rng.uniform() < 0.35
    return Outfit(
        skin=tuple(round(float(c), 4) for c in skin),
        hair=tuple(float(c) for c in _HAIR_COLOURS[int(rng.integers(len(_HAIR_COLOURS)))]),
        hairline=round(float(u(0.035, 0.06)), 4),
        nape=round(float(u(-0.01, 0.12)), 4),
        shirt=_colour(rng, (0.3, 0.9), (0.35, 0.95)),
        shirt_alt=_colour(rng, (0.0, 0.6), (0.6, 1.0)),
        shirt_pattern=PATTERNS[int(rng.integers(len(PATTERNS)))],
        pattern_period=round(float(u(0.05, 0.1)), 4),
        sleeve=round(float(rng.choice([u(0.2, 0.45), u(0.9, 1.0)])), 4),
        collar=round(float(u(0.0, 0.05)), 4),
        waist=round(float(u(0.04, 0.14)), 4),
        trousers=(0.16, 0.24, 0.42) if jeans else _colour(rng, (0.1, 0.6), (0.15, 0.7)),
        trousers_alt=_colour(rng, (0.0, 0.4), (0.1, 0.5)),
        trousers_pattern="checks" if rng.uniform() < 0.15 else "solid",
        legs=round(float(rng.choice([u(0.35, 0.55), u(0.92, 1.0), u(0.92, 1.0)])), 4),
        shoes=_colour(rng, (0.0, 0.5), (0.05, 0.95)),
    )


def _limb_coordinate(points: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """``t = (p - a)·(b - a) / |b - a|²`` for points ``(N, 3)``: 0 at ``a``, 1 at ``b``."""
    d = end - start
    return (points - start) @ d / float(d @ d)


def _bone_group_weight(body: AnnyBody, prefixes: tuple[str, ...]) -> np.ndarray:
    """Per-vertex skinning weight ``(V,)`` on the bones whose label starts with one of ``prefixes``."""
    hit = np.array([b.startswith(prefixes) for b in body.bone_index], dtype=bool)
    w = body.model.vertex_bone_weights.detach().cpu().double().numpy()
    idx = body.model.vertex_bone_indices.detach().cpu().numpy()
    return (w * hit[idx]).sum(1)


def vertex_materials(
    body: AnnyBody, phenotype: dict[str, float], outfit: Outfit
) -> tuple[np.ndarray, np.ndarray]:
    """Materials ``(V,)`` int64 (module constants) and unposed anny-frame vertices ``(V, 3)``."""
    pheno = torch.tensor([[phenotype[k] for k in PHENOTYPES]], dtype=body.dtype, device=body.device)
    with torch.no_grad():
        out = body.model(phenotype_kwargs=pheno)
    rest = out["vertices"][0].double().cpu().numpy()
    heads = out["bone_poses"][0, :, :3, 3].double().cpu().numpy()

    def joint(name: str) -> np.ndarray:
        return heads[body.bone_index[name]]

    x, y, z = rest.T
    parts = body.vertex_parts.cpu().numpy()
    arm = _bone_group_weight(body, ("upperarm", "lowerarm", "wrist", "finger", "metacarpal")) > 0.5
    leg = _bone_group_weight(body, ("upperleg", "lowerleg", "foot", "toe")) > 0.5
    side = np.where(x >= 0, "L", "R")
    t_arm = np.where(
        side == "L",
        _limb_coordinate(rest, joint("upperarm01.L"), joint("wrist.L")),
        _limb_coordinate(rest, joint("upperarm01.R"), joint("wrist.R")),
    )
    t_leg = np.where(
        side == "L",
        _limb_coordinate(rest, joint("upperleg01.L"), joint("foot.L")),
        _limb_coordinate(rest, joint("upperleg01.R"), joint("foot.R")),
    )
    waist_z = joint("upperleg01.L")[2] + outfit.waist
    eye = joint("eye.L")
    head_centre_y = joint("head")[1]

    m = np.where(z >= waist_z, SHIRT, TROUSERS)
    m = np.where(z > joint("neck01")[2] - outfit.collar, SKIN, m)
    m = np.where(arm, np.where(t_arm < outfit.sleeve, SHIRT, SKIN), m)
    m = np.where(leg & (z < waist_z), np.where(t_leg < outfit.legs, TROUSERS, LEG_SKIN), m)
    m = np.where(leg & (t_leg > 0.96), SHOES, m)
    hair = (z > eye[2] + outfit.hairline) | ((y > head_centre_y) & (z > eye[2] - outfit.nape))
    m = np.where(parts == 1, np.where(hair, HAIR, FACE), m)
    return m.astype(np.int64), rest


def _pattern(kind: str, coords: np.ndarray, period: float) -> np.ndarray:
    """Binary pattern ``(N,)`` on anny-frame coordinates: stripes across z or x, or checks."""
    cx = np.floor(coords[:, 0] / period).astype(np.int64)
    cz = np.floor(coords[:, 2] / period).astype(np.int64)
    if kind == "hstripes":
        return cz % 2 == 1
    if kind == "vstripes":
        return cx % 2 == 1
    if kind == "checks":
        return (cx + cz) % 2 == 1
    return np.zeros(len(coords), dtype=bool)


def vertex_albedo(materials: np.ndarray, rest: np.ndarray, outfit: Outfit) -> np.ndarray:
    """Per-vertex albedo ``(V, 3)`` float32 in [0, 1]."""
    colours = np.zeros((len(materials), 3))
    solid = {
        HAIR: outfit.hair,
        SKIN: outfit.skin,
        FACE: outfit.skin,
        LEG_SKIN: outfit.skin,
        SHOES: outfit.shoes,
    }
    for mat, c in solid.items():
        colours[materials == mat] = c
    alt = _pattern(outfit.shirt_pattern, rest, outfit.pattern_period)
    colours[materials == SHIRT] = np.where(alt[:, None], outfit.shirt_alt, outfit.shirt)[materials == SHIRT]
    alt = _pattern(outfit.trousers_pattern, rest, 1.5 * outfit.pattern_period)
    trousers = np.where(alt[:, None], outfit.trousers_alt, outfit.trousers)
    colours[materials == TROUSERS] = trousers[materials == TROUSERS]
    return np.clip(colours, 0.0, 1.0).astype(np.float32)


def face_parsing(materials: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Per-face parsing label ``(F,)`` int64 in 1..4: the label most of its corners carry (ties go
    to the smaller label)."""
    corner = MATERIAL_PARSING[materials][faces]  # (F, 3)
    counts = np.stack([(corner == k).sum(1) for k in range(1, 5)], 1)
    return counts.argmax(1) + 1
