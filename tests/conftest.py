"""Test-wide isolation: no network, no real model caches, deterministic threads."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import pytest

# Tests must never see (or download into) the developer's real model folders.
_ISOLATED = tempfile.mkdtemp(prefix="humanref-test-env-")
atexit.register(shutil.rmtree, _ISOLATED, ignore_errors=True)
os.environ["HF_HUB_CACHE"] = os.path.join(_ISOLATED, "hf-cache")
os.environ["HF_HOME"] = os.path.join(_ISOLATED, "hf-home")
os.environ["HUMANREF_MODELS"] = os.path.join(_ISOLATED, "models")
os.environ.setdefault("OMP_NUM_THREADS", "1")  # small tensors: threads only contend


@pytest.fixture(scope="session")
def isolated_env_dir() -> str:
    return _ISOLATED


@pytest.fixture(scope="session")
def anny_body():
    """One anny model for the session (tests read it, never change it)."""
    from humanref_cli.geometry.anny_body import load_anny

    return load_anny()


@pytest.fixture(scope="session")
def subject(tmp_path_factory, anny_body):
    """Synthetic subject seed 0 at 512² (read-only; a module may define its own ``subject``)."""
    from humanref_cli.synth.subject import make_subject

    out = tmp_path_factory.mktemp("subject")
    make_subject(out, seed=0, res=512, body=anny_body)
    return out
