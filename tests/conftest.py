"""Test-wide isolation: no network, no real model caches, deterministic threads."""

from __future__ import annotations

import os
import tempfile

import pytest

# Tests must never see (or download into) the developer's real model folders.
_ISOLATED = tempfile.mkdtemp(prefix="humanref-test-env-")
os.environ["HF_HUB_CACHE"] = os.path.join(_ISOLATED, "hf-cache")
os.environ["HF_HOME"] = os.path.join(_ISOLATED, "hf-home")
os.environ["HUMANREF_MODELS"] = os.path.join(_ISOLATED, "models")
os.environ.setdefault("OMP_NUM_THREADS", "1")  # small tensors: threads only contend


@pytest.fixture(scope="session")
def isolated_env_dir() -> str:
    return _ISOLATED
