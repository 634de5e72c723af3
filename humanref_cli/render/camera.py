"""Orthographic cameras in the world frame of the released HumanRef code (method.md §2.6).

World frame: z up, scene box [-1, 1]^3. A camera at azimuth ``a`` and elevation ``e`` (degrees) sits at
``d * (cos e cos a, cos e sin a, sin e)`` and looks at the origin. Azimuth 0 is the front view (camera on
+x, the person faces +x), azimuth 180 the back view. For the front camera, image right is world +y and
image up is world +z, so the person's left side (+y) appears on the right of the image, as in a photo.

Pixel convention: continuous pixel coordinates ``(u, v)`` with ``u`` along columns and ``v`` along rows
(row 0 at the top); the centre of pixel ``(i, j)`` is ``(i + 0.5, j + 0.5)``. This matches mediapipe's
normalised landmarks multiplied by the image size. The image plane spans ``[-radius, radius]^2``.
"""

from __future__ import annotations

import math

import torch


def camera_to_world(azimuth: float, elevation: float, distance: float = 1.0) -> torch.Tensor:
    """Camera-to-world matrix ``(4, 4)`` float32 with columns (right, up, back, centre).

    The camera looks along ``-back`` (towards the origin); up is the world +z projected to be
    orthogonal to the viewing direction. Front view: right = (0, 1, 0), up = (0, 0, 1), back = (1, 0, 0).
    """
    a, e = math.radians(azimuth), math.radians(elevation)
    centre = torch.tensor(
        [distance * math.cos(e) * math.cos(a), distance * math.cos(e) * math.sin(a), distance * math.sin(e)],
        dtype=torch.float64,
    )
    back = centre / centre.norm()
    forward = -back
    world_up = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    right = torch.linalg.cross(forward, world_up)
    right = right / right.norm()
    up = torch.linalg.cross(right, forward)
    c2w = torch.eye(4, dtype=torch.float64)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, up, back, centre
    return c2w.float()


def orthographic_rays(
    c2w: torch.Tensor, height: int, width: int, radius: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ray origins and unit directions ``(H, W, 3)`` of an orthographic camera.

    Pixel ``(i, j)`` (column i, row j) has camera-plane offset
    ``x = (i + 0.5 - W/2) * 2r/W``, ``y = -(j + 0.5 - H/2) * 2r/H``; origin = centre + x*right + y*up,
    direction = -back for every pixel.
    """
    device = c2w.device
    i = (torch.arange(width, device=device, dtype=torch.float32) + 0.5 - width / 2) * (2 * radius / width)
    j = -(torch.arange(height, device=device, dtype=torch.float32) + 0.5 - height / 2) * (2 * radius / height)
    y, x = torch.meshgrid(j, i, indexing="ij")  # (H, W) each
    right, up, back, centre = c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3]
    origins = centre + x[..., None] * right + y[..., None] * up
    dirs = (-back).expand(height, width, 3).clone()
    return origins, dirs


def world_to_pixel(points: torch.Tensor, c2w: torch.Tensor, height: int, width: int, radius: float = 1.0):
    """Project world points ``(N, 3)`` to continuous pixels ``(N, 2)`` (u, v) and depth ``(N,)``.

    Depth is the distance from the camera plane along the viewing direction (larger = farther).
    Inverse of :func:`orthographic_rays` for points on the rays.
    """
    rel = points - c2w[:3, 3]
    x = rel @ c2w[:3, 0]
    y = rel @ c2w[:3, 1]
    depth = -(rel @ c2w[:3, 2])
    u = (x / radius + 1.0) * width / 2
    v = (1.0 - y / radius) * height / 2
    return torch.stack([u, v], dim=-1), depth


def pixel_to_plane(uv: torch.Tensor, height: int, width: int, radius: float = 1.0) -> torch.Tensor:
    """Continuous pixels ``(N, 2)`` to camera-plane coordinates ``(N, 2)`` (x right, y up) in world units."""
    x = uv[:, 0] * 2 * radius / width - radius
    y = radius - uv[:, 1] * 2 * radius / height
    return torch.stack([x, y], dim=-1)


def gl_view_projection(c2w: torch.Tensor, near: float = 0.0, far: float = 4.0, radius: float = 1.0):
    """OpenGL clip-from-world matrix ``(4, 4)`` for this orthographic camera.

    NDC x/y equal the camera-plane coordinates divided by ``radius``; NDC z maps depth ``near..far``
    to ``-1..1``. GL's framebuffer row 0 is the image bottom: flip rows after reading.
    """
    w2c = torch.linalg.inv(c2w.double())
    proj = torch.eye(4, dtype=torch.float64)
    proj[0, 0] = 1.0 / radius
    proj[1, 1] = 1.0 / radius
    # camera-space z is -depth; depth in [near, far] -> ndc z in [-1, 1]
    proj[2, 2] = -2.0 / (far - near)
    proj[2, 3] = -(far + near) / (far - near)
    return (proj @ w2c).float()
