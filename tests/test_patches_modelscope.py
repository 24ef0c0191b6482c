"""Proofs for the ModelScope offline patches (packager/patches/modelscope-*), with real releases and no network.

For ModelScope 1.14.0 (the field guides' release) and 1.40.2 (the current release, what the fleet resolves
unpinned), each in a venv of its own (tests/modelscope_offline/venvs.py, built once and cached):

1. online phase, loopback only: a tiny StructBERT text-classification model in ModelScope format
   (tests/modelscope_offline/tinymodel.py) is pushed to the ModelScope-compatible hub of tests/hubs.py, and the
   release's own ``snapshot_download`` fills MODELSCOPE_CACHE from it;
2. offline phase, inside ``unshare -n`` with MODELSCOPE_OFFLINE=1 (what the offline_env role sets):
   * as released, ``snapshot_download(id)`` / ``model_file_download(id, file)`` fail on (or at least try) the
     public hub, and ``modelscope server --model_id id`` does not start;
   * patched with the catalogue's diffs (``packager.patching.apply_venv``), both downloads return the cached
     files and the server answers /describe and /call, with no network attempt but loopback;
   * reverted (``revert_venv``), the wheel's bytes are back and so is the failure.

The patches are applied to a private copy of the cached venv (hard links, with ``modelscope/`` itself copied),
so the cached venv stays as pip left it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.hubs import MSHub
from tests.modelscope_offline.venvs import VENVS
from tests.offline_venvs import VENVS as VENV_CACHE
from tests.offline_venvs import OfflineRun, linked_copy, make_venv, run_offline, site_packages

ROOT = Path(__file__).resolve().parents[1]
CATALOG = ROOT / "packager" / "patches"
SCRIPTS = Path(__file__).resolve().parent / "modelscope_offline"
MODEL = "airlock-test/tiny-structbert"
OFFLINE_ENV = {"MODELSCOPE_OFFLINE": "1"}
#: the offline switches of the libraries around ModelScope, set beside MODELSCOPE_OFFLINE in the unpatched runs to
#: show that none of them reaches ModelScope's hub calls (no release reads any of them there)
OTHER_SWITCHES = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}

DOWNLOAD = "modelscope-offline-cache"
SERVER = "modelscope-server-offline"
SCHEMA = "modelscope-pipeline-schema-json"
IDS = (DOWNLOAD, SCHEMA, SERVER)


def _catalog(*ids: str):
    """These patches (all three, or the ones named), read from their folders only: the other libraries'
    entries in the catalogue are not this proof's business."""
    from packager.patching.meta import load_patch

    return [load_patch(CATALOG / pid) for pid in sorted(ids or IDS)]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- the catalogue entries themselves (no venv, no network) --------------------------------------------------

def test_catalogue_entries_load_and_cover_the_checked_releases() -> None:
    from packager.patching.classify import classify

    patches = _catalog()
    assert [p.id for p in patches] == sorted(IDS)
    assert {p.dist for p in patches} == {"modelscope"}

    def status(version: str) -> dict[str, str]:
        return {d.id: d.status for d in classify(patches, {"modelscope": version})}

    assert status("1.14.0") == {DOWNLOAD: "applies", SERVER: "applies", SCHEMA: "applies"}
    assert status("1.40.2") == {DOWNLOAD: "applies", SERVER: "applies", SCHEMA: "not_needed"}
    # byte-identical neighbours (checked against their wheels by make_diffs.py and `patches check`)
    assert status("1.13.3") == {DOWNLOAD: "applies", SERVER: "applies", SCHEMA: "applies"}
    assert status("1.39.0") == {DOWNLOAD: "applies", SERVER: "applies", SCHEMA: "not_needed"}
    # releases whose files differ were not made a variant: unchecked, so a build stops on them
    assert status("1.20.0") == {DOWNLOAD: "unchecked", SERVER: "unchecked", SCHEMA: "not_needed"}
    assert status("1.41.0") == {DOWNLOAD: "unchecked", SERVER: "unchecked", SCHEMA: "unchecked"}


def test_the_offline_switch_is_the_only_condition_the_download_patch_adds() -> None:
    (patch,) = _catalog(DOWNLOAD)
    for variant in patch.meta.variants:
        text = (patch.folder / variant.diff).read_text()
        added = [ln for ln in text.splitlines() if ln.startswith("+") and not ln.startswith("+++")]
        assert sum("os.environ.get('MODELSCOPE_OFFLINE'" in ln for ln in added) == 2, variant.diff
        assert sum("local_files_only = True" in ln for ln in added) == 2, variant.diff


# --- the venvs, the model and the filled cache --------------------------------------------------------------

@dataclass(frozen=True)
class Release:
    version: str
    venv: Path  # the private, patchable copy
    cache: Path  # MODELSCOPE_CACHE, filled online from the loopback hub
    work: Path
    model_files: dict[str, bytes]

    def env(self, **extra: str) -> dict[str, str]:
        return {"MODELSCOPE_CACHE": str(self.cache), **extra}

    def run(self, script: str, tag: str, *args: str, env: dict[str, str] | None = None) -> tuple[OfflineRun, dict]:
        src = f"import sys\nsys.argv[1:] = {list(args)!r}\n" + (SCRIPTS / script).read_text()
        workdir = self.work / tag
        run = run_offline(self.venv, src, env=self.env(**(env or {})), workdir=workdir, cwd=workdir)
        lines = [ln for ln in run.stdout.splitlines() if ln.startswith("RESULT ")]
        assert lines, run.explain()
        return run, json.loads(lines[-1][len("RESULT "):])


def _plain_env(venv: Path, home: Path, cache: Path, **extra: str) -> dict[str, str]:
    return {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(home), "MODELSCOPE_CACHE": str(cache),
            "PYTHONUNBUFFERED": "1", **extra}


@pytest.fixture(scope="module", params=sorted(VENVS))
def release(request: pytest.FixtureRequest) -> Iterator[Release]:
    version = request.param
    name, requirements = VENVS[version]
    cached = make_venv(name, requirements)
    VENV_CACHE.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix=f"modelscope-{version}-proof-", dir=VENV_CACHE))  # same fs: hard links
    try:
        venv = linked_copy(cached, root / "venv", real=["modelscope"])
        from packager.patching.venv import installed_version

        assert installed_version(venv, "modelscope") == version
        home, cache, work = root / "home", root / "cache", root / "work"
        for d in (home, cache, work):
            d.mkdir()
        # the tiny model, made by this release's own StructBERT class (no network needed)
        model_dir = root / "model"
        r = subprocess.run([str(venv / "bin" / "python"), str(SCRIPTS / "tinymodel.py"), str(model_dir)],
                           env=_plain_env(venv, home, cache), capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
        files = {p.name: p.read_bytes() for p in sorted(model_dir.iterdir())}
        assert sorted(files) == ["config.json", "configuration.json", "pytorch_model.bin", "vocab.txt"]
        # online phase: the release's own client fills the cache from the hub on 127.0.0.1
        with MSHub({MODEL: {"master": files}}) as hub:
            host = hub.url.removeprefix("http://")
            r = subprocess.run([str(venv / "bin" / "python"), str(SCRIPTS / "populate.py"), MODEL],
                               env=_plain_env(venv, home, cache, MODELSCOPE_DOMAIN=host, MODELSCOPE_ENDPOINT=hub.url),
                               capture_output=True, text=True, timeout=600)
            assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
            assert len(hub.downloads()) == len(files)
        populated = json.loads([ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")][-1][7:])
        assert set(files) <= set(populated["files"])
        yield Release(version, venv, cache, work, files)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _revert_all(release: Release) -> None:
    from packager.patching.venv import revert_venv

    revert_venv(release.venv, _catalog())


def _assert_files(release: Release, patch_id: str, state: str) -> None:
    (patch,) = _catalog(patch_id)
    (variant,) = [v for v in patch.meta.variants if v.specifier.contains(release.version, prereleases=True)]
    site = site_packages(release.venv)
    assert {p: _sha256(site / p) for p in variant.files} == {p: getattr(h, state) for p, h in variant.files.items()}


def _hosts(run: OfflineRun) -> set[str]:
    return {a["target"] for a in run.external_attempts()}


# --- 1. snapshot_download / model_file_download of a cached model -------------------------------------------

def _assert_downloads_fail(release: Release, run: OfflineRun, result: dict) -> None:
    """As released: the public hub is asked first, and offline that fails (or at least is tried)."""
    assert run.returncode == 0, run.explain()
    if release.version == "1.14.0":
        for call in ("snapshot_download", "model_file_download"):
            err = result[call].get("error", "")
            assert err.startswith("ConnectionError: HTTPSConnectionPool(host='www.modelscope.cn', port=443)"), \
                run.explain()
            assert "/api/v1/models/airlock-test/tiny-structbert/revisions" in err, run.explain()
            assert "Temporary failure in name resolution" in err, run.explain()
        assert any("www.modelscope.cn" in h for h in _hosts(run)), run.explain()
    else:
        err = result["snapshot_download"].get("error", "")
        assert err.startswith("NetworkError: [E1020] Connection failed:"), run.explain()
        assert "host='modelscope.cn'" in err and "/repo/files?Revision=master" in err, run.explain()
        # model_file_download returns the cached file, but only after asking modelscope.cn for the revision
        assert result["model_file_download"].get("exists") is True, run.explain()
        assert any("modelscope.cn" in h for h in _hosts(run)), run.explain()


def _assert_downloads_offline(release: Release, run: OfflineRun, result: dict) -> None:
    assert run.returncode == 0, run.explain()
    assert run.external_attempts() == [], run.explain()
    for call in ("snapshot_download", "model_file_download"):
        assert result[call].get("exists") is True, run.explain()
        assert result[call]["path"].startswith(str(release.cache)), run.explain()
    snapshot = Path(result["snapshot_download"]["path"])
    assert {n: (snapshot / n).read_bytes() for n in release.model_files} == release.model_files
    # a file the cache lacks fails at once, with the release's own "not in the cache" error
    missing = result["missing_file"].get("error", "")
    assert missing.startswith("ValueError: Cannot find the requested files in the cached path and outgoing "
                              "traffic has been disabled" if release.version == "1.14.0" else
                              "CacheNotFound: [E1022] Cannot find cached file 'tokenizer.json'"), run.explain()


@pytest.mark.network
@pytest.mark.slow
def test_download_patch_serves_a_cached_model_offline(release: Release) -> None:
    from packager.patching.venv import apply_venv, revert_venv

    _revert_all(release)
    _assert_files(release, DOWNLOAD, "before")
    args = (MODEL, "config.json")

    run, result = release.run("download_offline.py", "dl-unpatched", *args, env={**OFFLINE_ENV, **OTHER_SWITCHES})
    _assert_downloads_fail(release, run, result)

    changed = apply_venv(release.venv, _catalog(DOWNLOAD))
    assert [(c.id, c.version, c.state) for c in changed] == [(DOWNLOAD, release.version, "applied")]
    _assert_files(release, DOWNLOAD, "after")
    run, result = release.run("download_offline.py", "dl-patched", *args, "tokenizer.json", env=OFFLINE_ENV)
    _assert_downloads_offline(release, run, result)

    reverted = revert_venv(release.venv, _catalog(DOWNLOAD))
    assert [(c.id, c.state) for c in reverted] == [(DOWNLOAD, "not_applied")]
    _assert_files(release, DOWNLOAD, "before")
    run, result = release.run("download_offline.py", "dl-reverted", *args, env={**OFFLINE_ENV, **OTHER_SWITCHES})
    _assert_downloads_fail(release, run, result)


# --- 2. modelscope server --model_id <cached model> ---------------------------------------------------------

ADD_EVENT_HANDLER = "AttributeError: 'FastAPI' object has no attribute 'add_event_handler'"
REVISION_REQUIRED = "error: the following arguments are required: --revision"


def _assert_server_does_not_start(run: OfflineRun, result: dict, message: str) -> None:
    assert run.returncode == 0, run.explain()  # the script ran; the server did not
    assert "describe" not in result and result["exit"] not in (0, None), run.explain() + result["log"]
    assert message in result["log"], result["log"]
    assert run.external_attempts() == [], run.explain()  # it stops before it gets to the hub


def _assert_server_answers(run: OfflineRun, result: dict) -> None:
    assert run.returncode == 0, run.explain()
    assert "describe" in result, result["log"]
    assert result["describe"]["schema"]["task_name"] == "text-classification", result
    assert result["describe"]["schema"]["schema"]["input"]["properties"]["text"]["type"] == "string", result
    call = result.get("call")
    assert call is not None, result
    assert sorted(call["labels"]) == ["negative", "positive"] and len(call["scores"]) == 2, result
    assert abs(sum(call["scores"]) - 1) < 1e-4, result
    assert run.external_attempts() == [], run.explain()


@pytest.mark.network
@pytest.mark.slow
def test_server_patches_serve_a_cached_model_offline(release: Release) -> None:
    from packager.patching.venv import apply_venv, revert_venv

    _revert_all(release)

    # as released: the air-gapped command line is refused, and with a revision given the app does not build
    run, result = release.run("server_offline.py", "srv-unpatched", MODEL, env=OFFLINE_ENV)
    _assert_server_does_not_start(run, result, REVISION_REQUIRED)
    run, result = release.run("server_offline.py", "srv-unpatched-rev", MODEL, "--revision", "master", env=OFFLINE_ENV)
    _assert_server_does_not_start(run, result, ADD_EVENT_HANDLER)

    # every modelscope patch for this release (the server needs the download patch to reach the cache)
    changed = apply_venv(release.venv, _catalog())
    expected = {DOWNLOAD: "applied", SERVER: "applied",
                SCHEMA: "applied" if release.version == "1.14.0" else "not_applicable"}
    assert {c.id: c.state for c in changed} == expected
    for pid, state in expected.items():
        if state == "applied":
            _assert_files(release, pid, "after")
    run, result = release.run("server_offline.py", "srv-patched", MODEL, env=OFFLINE_ENV)
    _assert_server_answers(run, result)

    reverted = revert_venv(release.venv, _catalog())
    assert {c.id: c.state for c in reverted} == {pid: ("not_applied" if s == "applied" else s)
                                                 for pid, s in expected.items()}
    for pid, state in expected.items():
        if state == "applied":
            _assert_files(release, pid, "before")
    run, result = release.run("server_offline.py", "srv-reverted", MODEL, env=OFFLINE_ENV)
    _assert_server_does_not_start(run, result, REVISION_REQUIRED)


@contextlib.contextmanager
def _only_file_of(release: Release, patch_id: str, path: str) -> Iterator[None]:
    """One file of a patch applied by hand (the rest as released); the file as the wheel ships it afterwards."""
    from packager.patching.unidiff import apply_file

    (patch,) = _catalog(patch_id)
    (variant,) = [v for v in patch.meta.variants if v.specifier.contains(release.version, prereleases=True)]
    (fd,) = [d for d in patch.diff_of(variant) if d.path == path]
    target = site_packages(release.venv) / path
    original = target.read_bytes()
    assert _sha256(target) == variant.files[path].before
    try:
        target.unlink()  # a new file, never a write through a hard link to the cached venv
        target.write_bytes(apply_file(fd, original, where=path))
        yield
    finally:
        target.unlink()
        target.write_bytes(original)


@pytest.mark.network
@pytest.mark.slow
def test_each_server_edit_is_needed(release: Release) -> None:
    """Leave one edit out and the offline start fails where the patch.yaml says it does."""
    from packager.patching.venv import apply_venv

    _revert_all(release)
    try:
        # the model id: with the download patch, the FastAPI and --revision fixes, but not input_output.py,
        # pipeline(model=<id>) asks the hub whether the model exists
        apply_venv(release.venv, _catalog(DOWNLOAD, SCHEMA))
        with _only_file_of(release, SERVER, "modelscope/server/api_server.py"):
            run, result = release.run("server_offline.py", "srv-model-id", MODEL, env=OFFLINE_ENV)
        assert "describe" not in result, result
        assert "ValueError: invalid model repo path" in result["log"], result["log"]
        assert "Temporary failure in name resolution" in result["log"], result["log"]
        assert any("modelscope.cn" in h for h in _hosts(run)), run.explain()
        _revert_all(release)
        if release.version == "1.14.0":
            # the schema: everything else patched, 1.14's pipeline_schema.json still stops the start
            apply_venv(release.venv, _catalog(DOWNLOAD, SERVER))
            run, result = release.run("server_offline.py", "srv-schema", MODEL, env=OFFLINE_ENV)
            assert "describe" not in result, result
            assert ("json.decoder.JSONDecodeError: Expecting property name enclosed in double quotes: line 3836 "
                    "column 1 (char 100720)") in result["log"], result["log"]
            assert run.external_attempts() == [], run.explain()
    finally:
        _revert_all(release)
    for pid in IDS:
        if pid != SCHEMA or release.version == "1.14.0":
            _assert_files(release, pid, "before")


def test_offline_scripts_import_nothing_from_the_repository() -> None:
    """They run with the release venv's Python, which cannot see this repository."""
    for script in ("populate.py", "download_offline.py", "server_offline.py", "tinymodel.py"):
        text = (SCRIPTS / script).read_text()
        assert "from tests" not in text and "import tests" not in text and "packager" not in text, script
