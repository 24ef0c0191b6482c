"""The host-side release module (roles/bundle/library/airlock_release.py), run by real Ansible on this
machine against a folder: planning, digest checks, atomic release build, current/previous, pruning."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from packager.bundle.assemble import assemble
from packager.bundle.manifest import FileEntry, Manifest, Provenance
from packager.cache import Cache
from packager.signing import generate_key

ROOT = Path(__file__).resolve().parents[1]
ANSIBLE = shutil.which("ansible", path=str(ROOT / ".venv" / "bin")) or shutil.which("ansible")
pytestmark = pytest.mark.skipif(ANSIBLE is None, reason="ansible is not installed (scripts/setup.sh installs it)")


def bundle(tmp: Path, version: str, files: dict[str, bytes]) -> Path:
    cache = Cache(tmp / "cache")
    entries = [FileEntry(path=p, sha256=cache.put_bytes(b), size=len(b)) for p, b in sorted(files.items())]
    m = Manifest(bundle={"name": "t", "version": version}, target={"python": "3.11"},
                 provenance=Provenance(packager_version="0", spec_sha256="0" * 64, lock_sha256="0" * 64,
                                       created="2024-01-01T00:00:00Z"),
                 packages=[], models=[], files=entries)
    return assemble(m, cache, tmp / "dist", generate_key())


def module(root: Path, b: Path, state: str, *, check: bool = False, **extra: object) -> dict[str, object]:
    args = {"root": str(root), "manifest": str(b / "manifest.json"), "state": state, **extra}
    cmd = [str(ANSIBLE), "localhost", "-c", "local", "-m", "airlock_release", "-a", json.dumps(args),
           "-e", "ansible_python_interpreter=" + str(ROOT / ".venv" / "bin" / "python")]
    if check:
        cmd.append("--check")
    env = dict(os.environ, ANSIBLE_LIBRARY=str(ROOT / "roles" / "bundle" / "library"),
               ANSIBLE_STDOUT_CALLBACK="json", ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_LOCALHOST_WARNING="0",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="0")
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    out = json.loads(r.stdout)
    res: dict[str, object] = out["plays"][0]["tasks"][0]["hosts"]["localhost"]
    return res


def transfer(root: Path, b: Path, digests: object) -> None:
    inc = root / "store" / "incoming"
    inc.mkdir(parents=True, exist_ok=True)
    assert isinstance(digests, list)
    for d in digests:
        shutil.copyfile(b / "blobs" / "sha256" / d, inc / d)


def install(root: Path, b: Path, **extra: object) -> dict[str, object]:
    plan = module(root, b, "planned", **extra)
    transfer(root, b, plan["missing"])
    assert not module(root, b, "present", **extra).get("failed")
    return module(root, b, "active", **extra)


def test_plan_install_and_idempotence(tmp_path: Path) -> None:
    root = tmp_path / "opt"
    b = bundle(tmp_path / "b1", "1.0.0", {"wheels/a.whl": b"a" * 100, "models/m/w.bin": b"w" * 1000,
                                           "controller/wheels/c.whl": b"c", "meta/models.yaml": b"x: 1\n"})
    plan = module(root, b, "planned")
    assert plan["changed"] is False and len(plan["missing"]) == 3  # controller/* is never sent to hosts
    check = module(root, b, "present", check=True)
    assert check["changed"] is True and not (root / "releases").exists()  # check mode changes nothing
    transfer(root, b, plan["missing"])
    assert module(root, b, "present")["changed"] is True
    assert (root / "releases" / "1.0.0" / "models" / "m" / "w.bin").read_bytes() == b"w" * 1000
    assert not (root / "releases" / "1.0.0" / "controller").exists()
    assert module(root, b, "active")["changed"] is True
    assert str((root / "current").readlink()) == "releases/1.0.0"
    for state in ("planned", "present", "active"):
        assert module(root, b, state)["changed"] is False


def test_bad_blob_is_quarantined_and_named(tmp_path: Path) -> None:
    root = tmp_path / "opt"
    b = bundle(tmp_path / "b1", "1.0.0", {"models/m/w.bin": b"w" * 1000, "meta/models.yaml": b"x: 1\n"})
    plan = module(root, b, "planned")
    transfer(root, b, plan["missing"])
    victim = next(root.glob("store/incoming/*"))
    victim.write_bytes(b"evil")
    res = module(root, b, "present")
    assert res["failed"] is True and "does not match the signed manifest" in str(res["msg"])
    assert not (root / "releases" / "1.0.0").exists()
    assert list((root / "store" / "quarantine").iterdir())
    # the rerun transfers it again and completes
    transfer(root, b, module(root, b, "planned")["missing"])
    assert module(root, b, "present")["changed"] is True


def test_same_version_other_content_refused(tmp_path: Path) -> None:
    root = tmp_path / "opt"
    install(root, bundle(tmp_path / "b1", "1.0.0", {"meta/models.yaml": b"x: 1\n"}))
    other = bundle(tmp_path / "b2", "1.0.0", {"meta/models.yaml": b"x: 2\n"})
    res = module(root, other, "planned")
    assert res["failed"] is True and "bump bundle.version" in str(res["msg"])


def test_previous_kept_old_releases_pruned_and_blobs_freed(tmp_path: Path) -> None:
    root = tmp_path / "opt"
    shared = b"s" * 500
    for i, v in enumerate(["1.0.0", "1.1.0", "1.2.0", "1.3.0"]):
        b = bundle(tmp_path / f"b{i}", v, {"models/m/shared.bin": shared, f"models/m/only-{v}.bin": v.encode() * 50,
                                           "meta/models.yaml": f"v: {v}\n".encode()})
        res = install(root, b, keep=2)
    assert str((root / "current").readlink()) == "releases/1.3.0"
    assert str((root / "previous").readlink()) == "releases/1.2.0"
    assert sorted(p.name for p in (root / "releases").iterdir()) == ["1.2.0", "1.3.0"]
    assert res["pruned"] == ["1.1.0"]
    blobs = {p.read_bytes() for p in (root / "store" / "sha256").iterdir()}
    assert shared in blobs and b"1.3.0" * 50 in blobs and b"1.0.0" * 50 not in blobs and b"1.1.0" * 50 not in blobs


def _tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def test_release_on_another_filesystem_and_a_full_disk(tmp_path: Path) -> None:
    """releases/ on its own filesystem: blobs are copied instead of linked; when that disk is full the
    build fails with a clear message, leaves no half-built release, and the rerun completes."""
    root = tmp_path / "opt"
    b = bundle(tmp_path / "b1", "1.0.0", {"models/m/w.bin": os.urandom(300_000), "meta/models.yaml": b"x: 1\n"})
    transfer(root, b, module(root, b, "planned")["missing"])
    releases = root / "releases"
    if not _tmpfs(releases, "64k"):
        pytest.skip("mounting a tmpfs needs root")
    try:
        res = module(root, b, "present")
        assert res["failed"] is True and "disk full on this host" in str(res["msg"]), res
        assert list(releases.iterdir()) == []  # no .partial left behind
    finally:
        subprocess.run(["umount", str(releases)], check=True)
    assert _tmpfs(releases, "4m")
    try:
        assert module(root, b, "present")["changed"] is True
        w = releases / "1.0.0" / "models" / "m" / "w.bin"
        assert w.stat().st_nlink == 1 and w.stat().st_size == 300_000  # a copy, not a link
        assert module(root, b, "active")["changed"] is True
    finally:
        subprocess.run(["umount", str(releases)], check=True)
