"""Model locking and fetching through the real huggingface_hub and modelscope clients, against hubs on loopback."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from packager.cache import Cache
from packager.errors import FetchError, HubError, LockError
from packager.fetch.models import fetch_models
from packager.hashing import sha256_file
from packager.lock import Lock, ModelsLock
from packager.lock.models import lock_models
from packager.spec import SpecFile, load_spec
from tests.hubs import (
    HFHub,
    MSHub,
    closed_port_url,
    point_hf_at,
    point_ms_at,
    sha256,
)

WEIGHTS = os.urandom(6000)  # LFS on the HF hub (>= 1024 bytes): sha256 comes from the tree
HEAD = os.urandom(2500)
FILES = {
    "config.json": b'{"hidden_size": 8}\n',
    "README.md": b"# tiny\n",
    "tokenizer/tokenizer.json": b'{"vocab": {}}\n',
    "model.safetensors": WEIGHTS,
    "head.bin": HEAD,
}
PLAIN = {"config.json", "README.md", "tokenizer/tokenizer.json"}


def write_spec(folder: Path, models: list[dict[str, Any]]) -> SpecFile:
    spec = {"bundle": {"name": "demo", "version": "1.0"}, "target": {"python": "3.11"}, "models": models}
    path = folder / "models.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return load_spec(path)


def hf_model(**kw: Any) -> dict[str, Any]:
    return {"name": "tiny", "source": "huggingface", "repo": "org/tiny", **kw}


def ms_model(**kw: Any) -> dict[str, Any]:
    return {"name": "tiny-ms", "source": "modelscope", "repo": "org/tiny-ms", **kw}


@pytest.fixture
def cache(tmp_path: Path) -> Cache:
    return Cache(tmp_path / "airlock-cache")


def assert_matches(lock: ModelsLock, files: dict[str, bytes]) -> None:
    (model,) = lock.models
    assert {f.path: (f.sha256, f.size) for f in model.files} == {p: (sha256(d), len(d)) for p, d in files.items()}


def assert_cached(cache: Cache, files: dict[str, bytes]) -> None:
    for data in files.values():
        digest = sha256(data)
        assert cache.has(digest, len(data))
        assert sha256_file(cache.path(digest)) == (digest, len(data))


# ---------------------------------------------------------------------------------------------------------
# Hugging Face
# ---------------------------------------------------------------------------------------------------------
def test_hf_lock_pins_branch_and_hashes_plain_files(hf_hub: HFHub, tmp_path: Path, cache: Cache) -> None:
    hf_hub.add_repo("org/tiny", {"main": FILES})
    lock = lock_models(write_spec(tmp_path, [hf_model()]), cache)

    (m,) = lock.models
    assert (m.source, m.repo, m.revision, m.commit) == ("huggingface", "org/tiny", "main",
                                                         hf_hub.commit_of("org/tiny", "main"))
    assert_matches(lock, FILES)
    # only the files without a hub sha256 were downloaded (pinned to the commit), and they stay cached
    assert {r.path.split(f"/{m.commit}/", 1)[1] for r in hf_hub.downloads()} == PLAIN
    assert all(f"/resolve/{m.commit}/" in r.path for r in hf_hub.downloads())
    assert_cached(cache, {p: FILES[p] for p in PLAIN})
    assert not cache.has(sha256(WEIGHTS))


def test_hf_fetch_then_nothing_twice(hf_hub: HFHub, tmp_path: Path, cache: Cache) -> None:
    hf_hub.add_repo("org/tiny", {"main": FILES})
    spec = write_spec(tmp_path, [hf_model()])
    lock = lock_models(spec, cache)
    fetch_models(lock.models, cache, jobs=4)
    assert_cached(cache, FILES)
    assert not list((cache.root / "tmp").iterdir())  # scratch space cleaned up

    hf_hub.clear_log()
    again = lock_models(spec, cache, previous=lock)  # branch: re-resolved, but same commit -> no downloads
    assert again == lock
    assert hf_hub.downloads() == []
    fetch_models(again.models, cache)
    assert hf_hub.log == [r for r in hf_hub.log if "/api/" in r.path]  # metadata only

    # pinned to a commit: an unchanged spec makes no request at all
    commit = lock.models[0].commit
    pinned_spec = write_spec(tmp_path, [hf_model(revision=commit)])
    pinned = lock_models(pinned_spec, cache, previous=lock_models(pinned_spec, cache))
    hf_hub.clear_log()
    assert lock_models(pinned_spec, cache, previous=pinned) == pinned
    fetch_models(pinned.models, cache)
    assert hf_hub.log == []


def test_hf_fetch_stays_on_locked_commit_after_branch_moves(hf_hub: HFHub, tmp_path: Path) -> None:
    hf_hub.add_repo("org/tiny", {"main": FILES})
    spec = write_spec(tmp_path, [hf_model()])
    lock = lock_models(spec, Cache(tmp_path / "c1"))
    new_weights = os.urandom(5000)
    new_commit = hf_hub.push("org/tiny", "main", {**FILES, "model.safetensors": new_weights})

    fresh = Cache(tmp_path / "c2")
    fetch_models(lock.models, fresh)  # the old commit, not the moved branch
    assert_cached(fresh, FILES)
    assert not fresh.has(sha256(new_weights))

    relocked = lock_models(spec, fresh, previous=lock)
    assert relocked.models[0].commit == new_commit
    assert_matches(relocked, {**FILES, "model.safetensors": new_weights})


def test_include_exclude(hf_hub: HFHub, tmp_path: Path, cache: Cache) -> None:
    hf_hub.add_repo("org/tiny", {"main": FILES})
    spec = write_spec(tmp_path, [hf_model(include=["*.json", "*.safetensors"], exclude=["tokenizer/*"])])
    lock = lock_models(spec, cache)
    assert [f.path for f in lock.models[0].files] == ["config.json", "model.safetensors"]
    assert {r.path.rsplit("/", 1)[1] for r in hf_hub.downloads()} == {"config.json"}

    with pytest.raises(LockError) as err:
        lock_models(write_spec(tmp_path, [hf_model(include=["*.gguf"])]), cache)
    assert "models[0] (tiny)" in str(err.value) and "model.safetensors" in str(err.value)


def test_tampered_download_never_enters_cache(hf_hub: HFHub, tmp_path: Path, cache: Cache) -> None:
    hf_hub.add_repo("org/tiny", {"main": FILES})
    lock = lock_models(write_spec(tmp_path, [hf_model()]), cache)
    bad = bytearray(WEIGHTS)
    bad[100] ^= 0xFF
    hf_hub.tamper("org/tiny", "model.safetensors", bytes(bad))

    with pytest.raises(FetchError) as err:
        fetch_models(lock.models, cache)
    assert "model.safetensors" in str(err.value) and "models[0] (tiny)" in str(err.value)
    assert not cache.has(sha256(WEIGHTS))
    assert not cache.has(sha256(bytes(bad)))
    assert not list((cache.root / "tmp").iterdir())


def test_dropped_connection_is_retried(hf_hub: HFHub, ms_hub: MSHub, tmp_path: Path, cache: Cache) -> None:
    ms_files = {"weights.bin": os.urandom(3000)}
    hf_hub.add_repo("org/tiny", {"main": FILES})
    ms_hub.add_repo("org/tiny-ms", {"master": ms_files})
    lock = lock_models(write_spec(tmp_path, [hf_model(), ms_model()]), cache)
    hf_hub.drop_once("org/tiny", "model.safetensors", after=1000)
    ms_hub.drop_once("org/tiny-ms", "weights.bin", after=700)
    fetch_models(lock.models, cache)
    assert_cached(cache, {**FILES, **ms_files})
    assert sum(r.path.endswith("/model.safetensors") for r in hf_hub.downloads()) == 2
    assert [r.headers.get("range") for r in ms_hub.downloads()] == [None, "bytes=700-"]  # resumed


@pytest.mark.parametrize("case", [
    ("org/missing", "main", "org/missing not found"),
    ("org/tiny", "no-such-branch", "'no-such-branch' not found"),
])
def test_hf_unknown_repo_or_revision(hf_hub: HFHub, tmp_path: Path, cache: Cache,
                                     case: tuple[str, str, str]) -> None:
    repo, revision, expect = case
    hf_hub.add_repo("org/tiny", {"main": FILES})
    with pytest.raises(HubError) as err:
        lock_models(write_spec(tmp_path, [hf_model(repo=repo, revision=revision)]), cache)
    text = str(err.value)
    assert expect in text and "models[0] (tiny)" in text and repo in text
    assert err.value.hint


def test_hf_server_down(hf_hub: HFHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cache: Cache) -> None:
    point_hf_at(monkeypatch, closed_port_url())
    with pytest.raises(HubError) as err:
        lock_models(write_spec(tmp_path, [hf_model()]), cache)
    assert "cannot reach the hub" in str(err.value) and "models[0] (tiny)" in str(err.value)
    assert "HF_ENDPOINT" in (err.value.hint or "")


def test_hf_token_sent_but_never_locked(hf_hub: HFHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                        cache: Cache) -> None:
    hf_hub.add_repo("org/tiny", {"main": FILES})
    hf_hub.token = "secret-token-123"
    spec = write_spec(tmp_path, [hf_model()])
    with pytest.raises(HubError) as err:  # private repo, no token
        lock_models(spec, cache)
    assert "HF_TOKEN" in (err.value.hint or "")

    hf_hub.clear_log()
    monkeypatch.setenv("HF_TOKEN", "secret-token-123")
    models = lock_models(spec, cache)
    fetch_models(models.models, cache)
    assert_cached(cache, FILES)
    assert "secret-token-123" not in Lock(models=models).dumps()
    assert hf_hub.downloads()
    assert {r.headers.get("authorization") for r in hf_hub.log} == {"Bearer secret-token-123"}


# ---------------------------------------------------------------------------------------------------------
# ModelScope
# ---------------------------------------------------------------------------------------------------------
def test_ms_lock_and_fetch(ms_hub: MSHub, tmp_path: Path, cache: Cache) -> None:
    v1 = {"config.json": b"{}", "model.safetensors": os.urandom(3000)}
    ms_hub.add_repo("org/tiny-ms", {"master": FILES, "v1.0": v1}, tags={"v1.0"})
    spec = write_spec(tmp_path, [ms_model(), ms_model(name="tiny-v1", revision="v1.0")])
    lock = lock_models(spec, cache)
    assert ms_hub.downloads() == []  # the listing gives sha256 for every file

    branch, tag = lock.models
    # no revision in the spec: ModelScope's default branch
    assert (branch.revision, branch.commit, tag.revision, tag.commit) == ("master", "master", "v1.0", "v1.0")
    assert {f.path: (f.sha256, f.size) for f in branch.files} == {p: (sha256(d), len(d)) for p, d in FILES.items()}
    assert {f.path: f.sha256 for f in tag.files} == {p: sha256(d) for p, d in v1.items()}

    fetch_models(lock.models, cache)
    assert_cached(cache, {**FILES, **{f"v1/{p}": d for p, d in v1.items()}})
    assert {r.query["Revision"] for r in ms_hub.downloads()} == {"master", "v1.0"}

    ms_hub.clear_log()
    fetch_models(lock_models(spec, cache, previous=lock).models, cache)
    assert ms_hub.downloads() == []


def test_ms_pinned_commit_and_filters(ms_hub: MSHub, tmp_path: Path, cache: Cache) -> None:
    ms_hub.add_repo("org/tiny-ms", {"master": FILES})
    commit = ms_hub.commit_of("org/tiny-ms", "master")
    spec = write_spec(tmp_path, [ms_model(revision=commit, exclude=["*.md", "*.bin"])])
    lock = lock_models(spec, cache)
    assert lock.models[0].commit == commit
    assert [f.path for f in lock.models[0].files] == ["config.json", "model.safetensors", "tokenizer/tokenizer.json"]
    fetch_models(lock.models, cache)
    assert {r.query["Revision"] for r in ms_hub.downloads()} == {commit}
    ms_hub.clear_log()
    assert lock_models(spec, cache, previous=lock) == lock
    assert ms_hub.log == []


def test_ms_tampered_download(ms_hub: MSHub, tmp_path: Path, cache: Cache) -> None:
    ms_hub.add_repo("org/tiny-ms", {"master": FILES})
    lock = lock_models(write_spec(tmp_path, [ms_model()]), cache)
    ms_hub.tamper("org/tiny-ms", "head.bin", HEAD[::-1])
    with pytest.raises(FetchError) as err:
        fetch_models(lock.models, cache)
    assert "head.bin" in str(err.value)
    assert not cache.has(sha256(HEAD)) and not cache.has(sha256(HEAD[::-1]))


@pytest.mark.parametrize("case", [
    ("org/missing", "master", "not found"),
    ("org/tiny-ms", "v9", "'v9' not found"),
])
def test_ms_unknown_repo_or_revision(ms_hub: MSHub, tmp_path: Path, cache: Cache,
                                     case: tuple[str, str, str]) -> None:
    repo, revision, expect = case
    ms_hub.add_repo("org/tiny-ms", {"master": FILES})
    with pytest.raises(HubError) as err:
        lock_models(write_spec(tmp_path, [ms_model(repo=repo, revision=revision)]), cache)
    text = str(err.value)
    assert expect in text and "models[0] (tiny-ms)" in text and repo in text


def test_ms_server_down_and_auth(ms_hub: MSHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                 cache: Cache) -> None:
    ms_hub.add_repo("org/tiny-ms", {"master": FILES})
    ms_hub.token = "ms-secret"
    spec = write_spec(tmp_path, [ms_model()])
    with pytest.raises(HubError) as err:
        lock_models(spec, cache)
    assert "modelscope login" in (err.value.hint or "")

    monkeypatch.setenv("MODELSCOPE_API_TOKEN", "ms-secret")
    assert "ms-secret" not in Lock(models=lock_models(spec, cache)).dumps()

    monkeypatch.setattr("packager.lock.models.MODELSCOPE_RETRIES", 0)  # fail fast on the closed port
    point_ms_at(monkeypatch, closed_port_url())
    with pytest.raises(HubError) as err:
        lock_models(spec, cache)
    assert "cannot reach the hub" in str(err.value) and "MODELSCOPE_ENDPOINT" in (err.value.hint or "")


# ---------------------------------------------------------------------------------------------------------
# Local folders
# ---------------------------------------------------------------------------------------------------------
def test_local_model(tmp_path: Path, cache: Cache) -> None:
    folder = tmp_path / "weights"
    (folder / "sub").mkdir(parents=True)
    (folder / ".git").mkdir()
    (folder / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (folder / ".DS_Store").write_bytes(b"junk")
    files = {"config.json": b"{}", "sub/model.safetensors": os.urandom(4096)}
    for rel, data in files.items():
        (folder / rel).write_bytes(data)
    spec = write_spec(tmp_path, [{"name": "mine", "source": "local", "path": "weights"}])

    lock = lock_models(spec, cache)
    (m,) = lock.models
    assert m.path == "weights"  # relative to the spec's folder: the same lock on every checkout
    assert_matches(lock, files)
    assert_cached(cache, files)  # cached at lock time: the folder may change later

    (folder / "config.json").write_bytes(b'{"changed": true}')
    fetch_models(lock.models, cache)  # still fine: the locked bytes were cached
    with pytest.raises(FetchError) as err:
        fetch_models(lock.models, Cache(tmp_path / "other-cache"), base=spec.folder)
    assert "--relock" in (err.value.hint or "")
    relocked = lock_models(spec, cache, previous=lock)  # re-hashed
    assert {f.path: f.sha256 for f in relocked.models[0].files}["config.json"] == sha256(b'{"changed": true}')
    json.loads(Lock(models=relocked).dumps())
