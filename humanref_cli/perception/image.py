"""Loading a user's photo so that nothing surprises later stages.

Every photo becomes an ``(H, W, 3)`` uint8 RGB array in display orientation (EXIF applied) plus an
optional ``(H, W)`` float alpha in [0, 1]. Grayscale, palette, 16-bit, CMYK and alpha images are
converted; anything that is not a decodable, reasonably sized image is a ``UsageError`` (exit 2) with a
one-line reason. The size limit is checked from the header, before any pixel is decoded, so a
decompression bomb costs nothing.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from humanref_cli.errors import UsageError

MIN_SIDE = 32
# PIL format names -> the extension the workspace copy gets (the original bytes are kept as they are).
_EXTENSIONS = {
    "JPEG": "jpg",
    "PNG": "png",
    "WEBP": "webp",
    "BMP": "bmp",
    "TIFF": "tif",
    "GIF": "gif",
    "MPO": "jpg",
}


@dataclass(frozen=True)
class LoadedImage:
    """A decoded photo. ``rgb (H, W, 3)`` uint8; ``alpha (H, W)`` float32 in [0, 1] or None."""

    rgb: np.ndarray
    alpha: np.ndarray | None
    path: Path
    format: str
    mode: str
    sha256: str
    exif_rotated: bool

    @property
    def extension(self) -> str:
        return _EXTENSIONS.get(self.format, self.path.suffix.lstrip(".").lower() or "img")

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)`` after EXIF orientation."""
        return self.rgb.shape[0], self.rgb.shape[1]


def load_image(path: str | Path, max_pixels: int = 50_000_000) -> LoadedImage:
    """Decode ``path`` into RGB (+ alpha) or raise ``UsageError`` saying why it cannot be used."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.exists():
        raise UsageError(f"image not found: {path}", hint="check the path")
    if not path.is_file():
        raise UsageError(f"not a file: {path}", hint="pass the path of a photo")
    data = path.read_bytes()
    if not data:
        raise UsageError(f"{path} is empty (0 bytes)", hint="pass a JPEG or PNG photo")
    digest = hashlib.sha256(data).hexdigest()
    try:
        with warnings.catch_warnings():
            # PIL warns, then raises, past its own pixel limit; ours below is stricter and explicit.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
            width, height = img.size
            if width * height > max_pixels:
                raise UsageError(
                    f"{path} is {width}x{height} = {width * height / 1e6:.0f} MP, over the "
                    f"{max_pixels / 1e6:.0f} MP limit (a decompression bomb or an unusually large photo)",
                    hint="downscale the photo, or raise prep.max_pixels with --set",
                )
            img.load()
            fmt, mode = img.format or "", img.mode
            rotated = img.getexif().get(0x0112, 1) not in (1, None)
            oriented = ImageOps.exif_transpose(img) if rotated else img
    except UsageError:
        raise
    except UnidentifiedImageError:
        raise UsageError(
            f"{path} is not an image this tool can read", hint="pass a JPEG or PNG photo"
        ) from None
    except Image.DecompressionBombError:
        raise UsageError(
            f"{path} is a decompression bomb (too many pixels)", hint="pass a normal photo"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UsageError(
            f"{path} is corrupt or truncated ({reason})", hint="re-export or re-download it"
        ) from None
    rgb, alpha = to_rgb_alpha(oriented)
    if min(rgb.shape[:2]) < MIN_SIDE:
        raise UsageError(
            f"{path} is only {rgb.shape[1]}x{rgb.shape[0]} pixels, too small to hold a person",
            hint="use a photo at least a few hundred pixels tall",
        )
    return LoadedImage(rgb, alpha, path, fmt, mode, digest, rotated)


def to_rgb_alpha(img) -> tuple[np.ndarray, np.ndarray | None]:
    """Any PIL image -> ``(rgb (H, W, 3) uint8, alpha (H, W) float32 | None)``.

    16-bit and 32-bit integer gray are scaled by their type's range (PIL's own conversion clips them
    to 255); float gray is taken as [0, 1]. An alpha channel that is fully opaque is dropped, so only a
    real cut-out counts as a silhouette.
    """
    mode = img.mode
    alpha = None
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        arr = np.asarray(rgba)
        alpha = arr[..., 3].astype(np.float32) / 255.0
        rgb = np.ascontiguousarray(arr[..., :3])
    elif mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        gray = np.asarray(img).astype(np.float64)
        scale = 65535.0 if mode.startswith("I;16") or gray.max() <= 65535 else float(gray.max())
        gray8 = np.clip(np.round(gray / scale * 255.0), 0, 255).astype(np.uint8)
        rgb = np.repeat(gray8[..., None], 3, axis=2)
    elif mode == "F":
        gray = np.asarray(img).astype(np.float64)
        gray8 = np.clip(np.round(np.nan_to_num(gray) * 255.0), 0, 255).astype(np.uint8)
        rgb = np.repeat(gray8[..., None], 3, axis=2)
    else:  # 1, L, P, RGB, CMYK, YCbCr, LAB, HSV
        rgb = np.asarray(img.convert("RGB"))
    if alpha is not None and alpha.min() >= 1.0:
        alpha = None
    return np.ascontiguousarray(rgb, dtype=np.uint8), alpha
