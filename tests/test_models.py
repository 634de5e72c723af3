"""models.lock parsing, pull from a mirror / file:// URLs, verify, HF-cache resolution, lock update.

Everything runs offline on tiny generated files in a temporary mirror; a hub endpoint on a closed
local port stands in for "no internet".
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file
from typer.testing import CliRunner

from humanref_cli.cli_models import models_app
from humanref_cli.errors import MissingModel, UsageError
from humanref_cli.models.lock import ModelFile, dump_lock, load_lock, packaged_lock_text, parse_lock
from humanref_cli.models.pull import pull, verify
from humanref_cli.models.store import (
    find_model,
    model_id,
    model_status,
    require_model,
    resolve_models_dir,
)
from humanref_cli.models.update import update_lock

REPO = Path(__file__).resolve().parents[1]
OFFLINE_ENDPOINT = "http://127.0.0.1:9"  # discard port: connection refused at once
ROLES = {"sd15", "sam", "marigold_normals", "segformer_parser", "blip", "clip", "lpips", "pose_heavy"}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def mirror(tmp_path) -> Path:
    """A mirror with two tiny roles laid out as DIR/<role>/<files>."""
    root = tmp_path / "mirror"
    hf = root / "tiny_hf"
    (hf / "weights").mkdir(parents=True)
    (hf / "config.json").write_text(json.dumps({"hidden": 4}))
    save_file({"w": np.arange(6, dtype=np.float32).reshape(2, 3)}, str(hf / "weights" / "model.safetensors"))
    (root / "tiny_url").mkdir()
    (root / "tiny_url" / "ckpt.bin").write_bytes(bytes(range(200)))
    return root


def lock_text(mirror: Path, with_sha: bool = True) -> str:
    def h(p: Path) -> str:
        return sha(p) if with_sha else ""

    hf, url = mirror / "tiny_hf", mirror / "tiny_url" / "ckpt.bin"
    return f"""
lock_version = 1

[tiny_hf]
source = "hf"
repo_id = "acme/tiny"
revision = ""
licence = "MIT"
size_mb = 1
used_by = ["prep"]
files = [
  {{ path = "config.json", sha256 = "{h(hf / "config.json")}" }},
  {{ path = "weights/model.safetensors", sha256 = "{h(hf / "weights/model.safetensors")}" }},
]

[tiny_url]
source = "url"
repo_id = "acme/tiny-url"
revision = "v1"
licence = "BSD-2-Clause"
files = [{{ path = "ckpt.bin", sha256 = "{h(url)}", url = "{url.as_uri()}" }}]
"""


@pytest.fixture
def lock(mirror):
    return parse_lock(lock_text(mirror))


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty HF cache, so a developer's real cache never leaks into these tests."""
    path = tmp_path / "hf-cache"
    path.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(path))
    monkeypatch.delenv("HUMANREF_MODELS", raising=False)
    return path


class FakeHub:
    """A local stand-in for the two hub endpoints huggingface_hub uses here: model info and resolve."""

    commit = "a" * 40

    def __init__(self, files: dict[str, bytes], lfs: set[str]):
        self.files, self.lfs, self.requests = files, lfs, []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self.do_GET()

            def do_GET(self):
                hub.requests.append((self.command, self.path))
                status, body, headers = hub.answer(self.path.split("?")[0])
                self.send_response(status)
                for key, value in headers + [("Content-Length", str(len(body)))]:
                    self.send_header(key, value)
                self.end_headers()
                if self.command == "GET":
                    self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.endpoint = f"http://127.0.0.1:{self.server.server_port}"

    def answer(self, path: str) -> tuple[int, bytes, list]:
        if path.startswith("/api/models/acme/tiny"):
            siblings = []
            for name, data in self.files.items():
                entry = {"rfilename": name, "size": len(data)}
                if name in self.lfs:
                    entry["lfs"] = {
                        "size": len(data),
                        "sha256": hashlib.sha256(data).hexdigest(),
                        "pointerSize": 1,
                    }
                siblings.append(entry)
            info = {"id": "acme/tiny", "sha": self.commit, "siblings": siblings}
            return 200, json.dumps(info).encode(), [("Content-Type", "application/json")]
        prefix = "/acme/tiny/resolve/"
        if path.startswith(prefix):
            _revision, name = path[len(prefix) :].split("/", 1)
            if name in self.files:
                etag = hashlib.sha256(self.files[name]).hexdigest()
                return 200, self.files[name], [("X-Repo-Commit", self.commit), ("ETag", f'"{etag}"')]
        return 404, b"", []


@pytest.fixture
def hub(mirror):
    root = mirror / "tiny_hf"
    files = {rel: (root / rel).read_bytes() for rel in ("config.json", "weights/model.safetensors")}
    fake = FakeHub(files, lfs={"weights/model.safetensors"})
    yield fake
    fake.server.shutdown()


def run_cli(*args: str):
    return CliRunner().invoke(models_app, list(args))


# ----------------------------------------------------------------------------- the repository lock
def test_repo_lock_pins_every_role():
    lock = load_lock(REPO / "models.lock")
    assert set(lock.models) == ROLES
    assert lock.spec("sd15").repo_id == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    assert not any("runwayml" in s.repo_id for s in lock.models.values())
    sd_files = {f.path for f in lock.spec("sd15").files}
    assert {
        "model_index.json",
        "unet/diffusion_pytorch_model.fp16.safetensors",
        "tokenizer/vocab.json",
    } <= sd_files
    assert lock.spec("sam").files[0].path == "sam_vit_h_4b8939.pth"
    assert lock.spec("sam").url["sam_vit_h_4b8939.pth"].startswith("https://dl.fbaipublicfiles.com/")
    for spec in lock.models.values():
        assert spec.licence and spec.used_by and spec.size_mb > 0, spec.role
        assert all(s == "" or len(s) == 64 for s in spec.sha256.values())
    # The URL roles are locked (docs/models.md): torchvision's file names carry their hash's first digits.
    assert lock.spec("sam").locked and lock.spec("lpips").locked and lock.spec("pose_heavy").locked
    # mediapipe's own build pins the same object generation of the heavy pose model
    assert "generation=1661875897944151" in lock.spec("pose_heavy").files[0].url
    assert lock.spec("lpips").sha256["vgg16-397923af.pth"].startswith("397923af")
    assert lock.spec("sam").files[0].size == 2564550879


def test_packaged_lock_is_identical_to_repo_lock():
    repo_bytes = (REPO / "models.lock").read_bytes()
    assert (REPO / "humanref_cli" / "data" / "models.lock").read_bytes() == repo_bytes
    assert packaged_lock_text() == repo_bytes.decode("utf-8")
    assert set(load_lock().models) == ROLES


def test_dump_round_trips_the_repo_lock():
    text = (REPO / "models.lock").read_text(encoding="utf-8")
    assert dump_lock(parse_lock(text)) == text


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda t: t.replace("lock_version = 1", "lock_version = 7"), "lock_version"),
        (lambda t: t.replace('repo_id = "acme/tiny"\n', ""), "missing 'repo_id'"),
        (lambda t: t.replace('source = "hf"', 'source = "ftp"'), "source must be"),
        (lambda t: t.replace('"acme/tiny"', '"../tiny"'), "repo_id must look like"),
        (lambda t: t.replace('path = "config.json"', 'path = "/etc/passwd"'), "must be relative"),
        (lambda t: t.replace('path = "config.json"', 'path = "../x.json"'), "must be relative"),
        (lambda t: t.replace('licence = "MIT"', "licence = 3"), "'licence' must be str"),
        (lambda t: t.replace("size_mb = 1", "size_mb = 1\ncolour = 'red'"), "unknown keys"),
        (lambda t: t.replace("[tiny_hf]", "[tiny_hf"), "not valid TOML"),
    ],
)
def test_malformed_lock_is_a_usage_error(mirror, edit, expected):
    with pytest.raises(UsageError) as info:
        parse_lock(edit(lock_text(mirror)), source="x.lock")
    assert info.value.exit_code == 2
    assert "malformed models lock x.lock" in info.value.message and expected in info.value.message


def test_bad_sha_and_missing_url_are_rejected(mirror):
    text = lock_text(mirror, with_sha=False)
    with pytest.raises(UsageError, match="not 64 hex"):
        parse_lock(text.replace('path = "config.json", sha256 = ""', 'path = "config.json", sha256 = "abc"'))
    url = (mirror / "tiny_url" / "ckpt.bin").as_uri()
    with pytest.raises(UsageError, match="needs a url"):
        parse_lock(text.replace(f', url = "{url}"', ""))


def test_unreadable_lock_path_is_a_usage_error(tmp_path):
    result = run_cli("list", "--lock", str(tmp_path / "nope.lock"))
    assert result.exit_code == 2
    assert "cannot read models lock" in result.stderr


# ----------------------------------------------------------------------------- resolution
def test_models_dir_resolution_order(tmp_path):
    env = {"HUMANREF_MODELS": str(tmp_path / "env")}
    assert resolve_models_dir(tmp_path / "opt", env) == tmp_path / "opt"
    assert resolve_models_dir(None, env) == tmp_path / "env"
    assert resolve_models_dir(None, {}) == Path.home() / ".cache" / "humanref" / "models"


def test_model_id_for_manifests(lock):
    assert model_id("tiny_hf", lock) == "acme/tiny@unpinned"
    assert model_id("tiny_url", lock) == "acme/tiny-url@v1"
    assert model_id("sd15").startswith("stable-diffusion-v1-5/stable-diffusion-v1-5@")


def test_missing_model_names_the_pull_command(lock, tmp_path, cache):
    assert find_model("tiny_hf", tmp_path / "models", lock=lock, hf_cache=cache) is None
    with pytest.raises(MissingModel) as info:
        require_model("tiny_hf", tmp_path / "models", lock=lock, hf_cache=cache)
    assert info.value.exit_code == 5
    assert "'tiny_hf'" in info.value.message
    assert info.value.hint.startswith("humanref models pull tiny_hf")


def test_cli_path_of_missing_model_exits_5(mirror, tmp_path, cache):
    (tmp_path / "models.lock").write_text(lock_text(mirror))
    result = run_cli(
        "path", "tiny_hf", "--lock", str(tmp_path / "models.lock"), "--models-dir", str(tmp_path / "m")
    )
    assert result.exit_code == 5
    assert result.stdout == ""
    assert "humanref models pull tiny_hf" in result.stderr


def make_hf_cache(cache: Path, mirror: Path, commit: str = "c0ffee" * 6 + "abcd") -> Path:
    """The huggingface_hub cache layout: refs/main -> snapshots/<commit>/<files>."""
    repo = cache / "models--acme--tiny"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snap = repo / "snapshots" / commit
    (snap / "weights").mkdir(parents=True)
    for rel in ("config.json", "weights/model.safetensors"):
        (snap / rel).write_bytes((mirror / "tiny_hf" / rel).read_bytes())
    return snap


def test_hf_cache_resolution_at_pinned_revision(mirror, lock, tmp_path, cache):
    snap = make_hf_cache(cache, mirror)
    assert find_model("tiny_hf", tmp_path / "empty", lock=lock, hf_cache=cache) == snap
    status = verify(lock.spec("tiny_hf"), None, lock=lock, hf_cache=cache)
    assert status.location == "hf_cache" and status.verified is True
    # pinned to a commit the cache does not hold: not found
    pinned = lock.with_spec(replace(lock.spec("tiny_hf"), revision="f" * 40))
    assert find_model("tiny_hf", None, lock=pinned, hf_cache=cache) is None
    # one file missing from the snapshot: not found
    (snap / "weights" / "model.safetensors").unlink()
    assert find_model("tiny_hf", None, lock=lock, hf_cache=cache) is None


def test_cli_path_finds_hf_cache_from_env(mirror, tmp_path, cache):
    snap = make_hf_cache(cache, mirror)
    (tmp_path / "models.lock").write_text(lock_text(mirror))
    result = run_cli(
        "path", "tiny_hf", "--lock", str(tmp_path / "models.lock"), "--models-dir", str(tmp_path / "m")
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(snap)


# ----------------------------------------------------------------------------- pull / verify
def test_pull_from_mirror_installs_and_verifies(mirror, lock, tmp_path, cache):
    models = tmp_path / "models"
    res = pull(lock.spec("tiny_hf"), models, mirror=mirror)
    assert res.fetched == ("config.json", "weights/model.safetensors") and res.skipped == ()
    for rel in res.fetched:
        assert (models / "tiny_hf" / rel).read_bytes() == (mirror / "tiny_hf" / rel).read_bytes()
    assert not (models / ".staging").exists()
    status = model_status("tiny_hf", models, lock=lock, hf_cache=cache)
    assert (status.present, status.verified, status.state) == (True, True, "verified")
    assert find_model("tiny_hf", models, lock=lock, hf_cache=cache) == models / "tiny_hf"
    again = pull(lock.spec("tiny_hf"), models, mirror=mirror)
    assert again.fetched == () and len(again.skipped) == 2


def test_pull_from_repo_id_layout(mirror, lock, tmp_path):
    alt = tmp_path / "alt"
    (alt / "acme").mkdir(parents=True)
    (mirror / "tiny_hf").rename(alt / "acme" / "tiny")
    res = pull(lock.spec("tiny_hf"), tmp_path / "models", mirror=alt)
    assert len(res.fetched) == 2 and (tmp_path / "models" / "tiny_hf" / "config.json").is_file()


def test_pull_rejects_a_corrupt_mirror_file(mirror, lock, tmp_path, cache):
    (mirror / "tiny_hf" / "config.json").write_text('{"hidden": 5}')
    with pytest.raises(MissingModel, match="sha256 mismatch for config.json") as info:
        pull(lock.spec("tiny_hf"), tmp_path / "models", mirror=mirror)
    assert info.value.exit_code == 5
    assert not (tmp_path / "models" / "tiny_hf" / "config.json").exists()
    assert not (tmp_path / "models" / ".staging" / "tiny_hf" / "config.json").exists()
    status = model_status("tiny_hf", tmp_path / "models", lock=lock, hf_cache=cache)
    assert status.as_dict()["present"] is False
    assert status.as_dict()["missing_files"] == ["config.json", "weights/model.safetensors"]


def test_pull_from_file_urls(mirror, lock, tmp_path, cache):
    seen = []
    res = pull(lock.spec("tiny_url"), tmp_path / "models", progress=lambda *a: seen.append(a))
    assert res.fetched == ("ckpt.bin",)
    assert seen[-1] == ("tiny_url/ckpt.bin", 200, 200)
    assert (tmp_path / "models" / "tiny_url" / "ckpt.bin").read_bytes() == bytes(range(200))
    assert model_status("tiny_url", tmp_path / "models", lock=lock, hf_cache=cache).verified is True


def test_pull_from_unreachable_hub_is_exit_5(lock, tmp_path, cache):
    with pytest.raises(MissingModel, match="cannot reach the Hugging Face hub for acme/tiny@main") as info:
        pull(lock.spec("tiny_hf"), tmp_path / "models", endpoint=OFFLINE_ENDPOINT)
    assert "--from DIR" in info.value.hint
    assert not model_status("tiny_hf", tmp_path / "models", lock=lock, hf_cache=cache).present


def test_verify_detects_a_corrupted_file(mirror, lock, tmp_path, cache):
    models = tmp_path / "models"
    pull(lock.spec("tiny_hf"), models, mirror=mirror)
    weights = models / "tiny_hf" / "weights" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    status = verify(lock.spec("tiny_hf"), models, lock=lock, hf_cache=cache)
    assert status.present and status.verified is False
    assert status.bad_files == ("weights/model.safetensors",) and status.state == "corrupt"
    # pull re-fetches only the corrupt file
    res = pull(lock.spec("tiny_hf"), models, mirror=mirror)
    assert res.fetched == ("weights/model.safetensors",) and res.skipped == ("config.json",)
    assert verify(lock.spec("tiny_hf"), models, lock=lock, hf_cache=cache).verified is True


def test_unlocked_files_install_but_are_not_verified(mirror, tmp_path, cache):
    lock = parse_lock(lock_text(mirror, with_sha=False))
    res = pull(lock.spec("tiny_hf"), tmp_path / "models", mirror=mirror)
    assert res.unverified == res.fetched
    status = verify(lock.spec("tiny_hf"), tmp_path / "models", lock=lock, hf_cache=cache)
    assert status.present and status.verified is None and status.state == "unlocked"


# ----------------------------------------------------------------------------- CLI
def test_cli_pull_list_verify(mirror, tmp_path, cache):
    lock_file = tmp_path / "models.lock"
    lock_file.write_text(lock_text(mirror))
    common = ["--lock", str(lock_file), "--models-dir", str(tmp_path / "models")]

    before = json.loads(run_cli("list", "--json", *common).stdout)
    assert [(r["role"], r["present"], r["verified"]) for r in before] == [
        ("tiny_hf", False, None),
        ("tiny_url", False, None),
    ]
    pulled = run_cli("pull", "tiny_hf", "--from", str(mirror), *common)
    assert pulled.exit_code == 0, pulled.stderr
    assert pulled.stdout.strip() == f"tiny_hf: {tmp_path / 'models' / 'tiny_hf'}"
    after = {r["role"]: r for r in json.loads(run_cli("list", "--json", *common).stdout)}
    assert (after["tiny_hf"]["present"], after["tiny_hf"]["verified"], after["tiny_hf"]["state"]) == (
        True,
        True,
        "verified",
    )
    assert after["tiny_url"]["present"] is False
    table = run_cli("list", *common)
    assert table.exit_code == 0 and "acme/tiny@unpinned" in table.stdout

    assert run_cli("verify", *common).exit_code == 0
    (tmp_path / "models" / "tiny_hf" / "config.json").write_text("{}")
    bad = run_cli("verify", "tiny_hf", *common)
    assert bad.exit_code == 5
    assert "sha256 mismatch for config.json" in bad.stderr and "humanref models pull tiny_hf" in bad.stderr
    assert run_cli("verify", "tiny_url", *common).exit_code == 5  # named but not installed


def test_cli_pull_usage_errors(mirror, tmp_path, cache):
    lock_file = tmp_path / "models.lock"
    lock_file.write_text(lock_text(mirror))
    common = ["--lock", str(lock_file), "--models-dir", str(tmp_path / "models")]
    assert run_cli("pull", *common).exit_code == 2  # no roles and no --all
    unknown = run_cli("pull", "nope", "--from", str(mirror), *common)
    assert unknown.exit_code == 2 and "unknown model role 'nope'" in unknown.stderr
    everything = run_cli("pull", "--all", "--from", str(mirror), "--json", *common)
    assert everything.exit_code == 0, everything.stderr
    assert [r["role"] for r in json.loads(everything.stdout)] == ["tiny_hf", "tiny_url"]


# ----------------------------------------------------------------------------- lock --update
def test_lock_update_from_mirror_fills_hashes(mirror, tmp_path):
    lock_file = tmp_path / "models.lock"
    lock_file.write_text(lock_text(mirror, with_sha=False))
    result = run_cli("lock", "--update", "--from", str(mirror), "--lock", str(lock_file))
    assert result.exit_code == 0, result.stderr
    updated = load_lock(lock_file)
    expected = parse_lock(lock_text(mirror))
    for role in ("tiny_hf", "tiny_url"):
        assert updated.spec(role).sha256 == expected.spec(role).sha256
    weights = mirror / "tiny_hf" / "weights" / "model.safetensors"
    assert updated.spec("tiny_hf").files[1].size == weights.stat().st_size
    assert run_cli("lock", "--lock", str(lock_file)).stdout.strip().endswith("2 roles, 1 fully locked")


def test_lock_update_refuses_a_mirror_that_contradicts_the_lock(mirror, lock):
    (mirror / "tiny_url" / "ckpt.bin").write_bytes(b"other")
    with pytest.raises(UsageError, match="does not match the sha256 already in the lock"):
        update_lock(lock, ["tiny_url"], mirror=mirror)


def test_lock_update_offline_fails_clearly(mirror):
    lock = parse_lock(lock_text(mirror, with_sha=False))
    with pytest.raises(MissingModel, match="cannot reach the Hugging Face hub for acme/tiny") as info:
        update_lock(lock, ["tiny_hf"], endpoint=OFFLINE_ENDPOINT)
    assert "--from DIR" in info.value.hint
    gone = lock.with_spec(
        replace(lock.spec("tiny_url"), files=(ModelFile("ckpt.bin", url="file:///nonexistent/x"),))
    )
    with pytest.raises(MissingModel, match="cannot download file:///nonexistent/x"):
        update_lock(gone, ["tiny_url"])


# ----------------------------------------------------------------------------- hub (local fake)
def test_pull_from_hub_at_pinned_revision(hub, lock, tmp_path, cache):
    pinned = replace(lock.spec("tiny_hf"), revision=hub.commit)
    res = pull(pinned, tmp_path / "models", endpoint=hub.endpoint)
    assert res.fetched == ("config.json", "weights/model.safetensors")
    assert (tmp_path / "models" / "tiny_hf" / "config.json").read_bytes() == hub.files["config.json"]
    assert ("GET", f"/acme/tiny/resolve/{hub.commit}/weights/model.safetensors") in hub.requests
    assert not (tmp_path / "models" / ".staging").exists()
    assert verify(pinned, tmp_path / "models", lock=lock.with_spec(pinned), hf_cache=cache).verified is True


def test_pull_from_hub_rejects_a_tampered_file(hub, lock, tmp_path):
    hub.files["config.json"] = b'{"hidden": 666}'
    with pytest.raises(MissingModel, match="sha256 mismatch for config.json from acme/tiny"):
        pull(lock.spec("tiny_hf"), tmp_path / "models", endpoint=hub.endpoint)
    assert not (tmp_path / "models" / "tiny_hf" / "config.json").exists()


def test_lock_update_from_hub_fills_revision_hashes_and_sizes(hub, mirror):
    unlocked = parse_lock(lock_text(mirror, with_sha=False))
    updated = update_lock(unlocked, ["tiny_hf"], endpoint=hub.endpoint).spec("tiny_hf")
    expected = parse_lock(lock_text(mirror)).spec("tiny_hf")
    assert updated.revision == hub.commit and updated.model_id == f"acme/tiny@{hub.commit}"
    assert updated.sha256 == expected.sha256  # config.json downloaded and hashed, weights from LFS metadata
    assert [f.size for f in updated.files] == [len(hub.files[f.path]) for f in updated.files]
    assert updated.locked
    del hub.files["config.json"]
    with pytest.raises(UsageError, match=f"config.json is not in acme/tiny@{hub.commit}"):
        update_lock(unlocked, ["tiny_hf"], endpoint=hub.endpoint)
