"""mediapipe's heavy pose landmark model, put where mediapipe looks for it.

mediapipe 0.10.21 bundles the ``full`` landmark model only. Asked for ``model_complexity=2`` it loads
``<mediapipe package>/modules/pose_landmark/pose_landmark_heavy.tflite`` and, when that file is
missing, downloads it there itself (``mediapipe.python.solutions.download_utils``) without checking
what it got. There is no setting that points it elsewhere, so humanref keeps the verified copy pulled
by ``humanref models pull pose_heavy`` in its models directory and copies it to that one place before
the first heavy detection (atomically: a partial file would be loaded as a broken model). The copy is
the same file mediapipe would download (``models.lock`` pins its sha256, as mediapipe's own build does).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

FILE_NAME = "pose_landmark_heavy.tflite"


def package_path() -> Path:
    """Where mediapipe loads (and would download) the heavy landmark model."""
    import mediapipe

    return Path(mediapipe.__file__).resolve().parent / "modules" / "pose_landmark" / FILE_NAME


def locked_sha256() -> str:
    """The heavy model's sha256 as ``models.lock`` pins it (role ``pose_heavy``)."""
    from humanref_cli.models.lock import load_lock

    return load_lock().spec("pose_heavy").sha256[FILE_NAME]


def installed(sha256: str, target: Path | None = None) -> bool:
    """Whether mediapipe's package holds the heavy model with ``sha256``."""
    from humanref_cli.models.store import hash_file

    target = target or package_path()
    return target.is_file() and hash_file(target) == sha256


def install(source: Path, sha256: str, target: Path | None = None) -> Path:
    """Copy ``source`` (the pulled model) to mediapipe's package unless the same file is there already.

    Raises ``ValueError`` when ``source`` is not the file with ``sha256`` (nothing is written) and
    ``OSError`` when the package directory cannot be written (a read-only install)."""
    target = target or package_path()
    if installed(sha256, target):
        return target
    fd, tmp = tempfile.mkstemp(prefix=f".{FILE_NAME}.", dir=target.parent)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
            while chunk := src.read(8 << 20):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != sha256:
            raise ValueError(f"{source} is not the locked file (sha256 {digest.hexdigest()[:12]}…)")
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
