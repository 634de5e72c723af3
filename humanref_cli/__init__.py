"""humanref: one photo of a person to a textured 3D human (HumanRef, CVPR 2024)."""

__version__ = "0.1.0"
