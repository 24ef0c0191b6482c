"""The offline control node: what the bundle carries so the air-gapped side can run the deploy.

A spec with a ``controller`` section gets, under ``controller/`` in the bundle:

- ``wheels/``: ansible-core and ansible (unless ``controller.defaults: false``), the packager's runtime
  dependencies and ``controller.requirements``, resolved for the *control node's* Python and platform by the
  same machinery as the target's wheels (``resolve_wheels``), plus a wheel of this packager built from its
  source tree (deterministic: fixed timestamps, normalised modes, cached by source digest);
- ``deploy/``: the deploy tree (``site.yml``, ``playbooks/``, ``roles/``, ``inventory/``, ``services/``,
  ``README.md``, ``docs/``) taken from the repository that holds this packager;
- ``bootstrap.py``: the stdlib-only installer (``packager/bootstrap.py``) that verifies and installs all that.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import packager
from packager.bundle.manifest import ControllerEntry, FileEntry
from packager.cache import Cache
from packager.errors import LockError
from packager.lock import PythonLock
from packager.spec import PythonSection, Spec

__all__ = [
    "BUILD_ONLY", "DEFAULT_ANSIBLE", "DEPLOY_PATHS", "DIST_NAME", "WHEEL_EPOCH", "controller_digest",
    "controller_files", "controller_requirements", "deploy_tree", "lock_controller", "packager_requirements",
    "packager_wheel", "source_root",
]

log = logging.getLogger("packager")

DIST_NAME = "airlock-packager"
#: Known to work together on Python 3.11 (see requirements-deploy.txt); ansible 12 needs ansible-core 2.19.
DEFAULT_ANSIBLE = ("ansible-core==2.19.14", "ansible==12.3.0")
#: Needed to build bundles, never to verify, inspect or unpack them: not carried to the control node.
BUILD_ONLY = frozenset({"uv", "httpx", "huggingface-hub", "modelscope", "tqdm", "requests"})
#: The deploy tree, relative to the repository root.
DEPLOY_PATHS = ("site.yml", "ansible.cfg", "README.md", "playbooks", "roles", "inventory", "services", "docs")
_SKIP_DIRS = frozenset({"__pycache__", ".molecule", ".git", ".pytest_cache", ".mypy_cache", ".ruff_cache",
                        ".ansible", ".cache"})
_SKIP_SUFFIXES = (".pyc", ".pyo", ".key", ".swp", ".swo", "~")
#: zip timestamps of the packager's own wheel (1980-01-01, the earliest a zip can hold): same source, same bytes
WHEEL_EPOCH = 315532800
_BUILD_TIMEOUT_S = 600


def source_root() -> Path | None:
    """The repository this packager runs from (the folder holding its pyproject.toml), or None when it was
    installed from a wheel and no source tree is beside it."""
    root = Path(packager.__file__).resolve().parents[1]
    try:
        data = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    return root if data.get("project", {}).get("name") == DIST_NAME else None


def packager_requirements(root: Path | None) -> list[str]:
    """The packager's runtime dependencies that the control node needs (verify, inspect, unpack): from the
    source tree's pyproject.toml (what the packager wheel will declare), else from the installed metadata.
    Optional extras and the build-only packages (uv, hub clients...) are left out."""
    reqs: list[str]
    if root is not None:
        data = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
        reqs = list(data["project"].get("dependencies", []))
    else:
        reqs = []
        for line in importlib.metadata.requires(DIST_NAME) or []:
            marker = Requirement(line).marker
            if marker is None or not _mentions_extra(marker):
                reqs.append(line)
    return [r for r in reqs if canonicalize_name(Requirement(r).name) not in BUILD_ONLY]


def _mentions_extra(marker: Marker) -> bool:
    return "extra" in str(marker)


def controller_requirements(spec: Spec, root: Path | None) -> list[str]:
    """Everything the controller's wheels are resolved from: the defaults (ansible-core, ansible), the
    packager's runtime dependencies, then ``controller.requirements``; duplicates dropped, order kept."""
    c = spec.controller
    if c is None:
        return []
    out: list[str] = []
    for line in (*(DEFAULT_ANSIBLE if c.defaults else ()), *packager_requirements(root), *c.requirements):
        if line not in out:
            out.append(line)
    return out


def controller_digest(spec: Spec, requirements: list[str]) -> str:
    """The controller lock's spec digest: the controller section as resolved (platform, index) and the full
    requirement list, so a new packager dependency re-resolves and an unchanged spec does not."""
    payload = {"spec": spec.section_digest("controller"), "requirements": requirements}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def lock_controller(spec: Spec, requirements: list[str], *, previous: PythonLock | None = None,
                    uv: str | None = None) -> PythonLock:
    """Pin one wheel per requirement for the control node. Returns ``previous`` untouched if still current."""
    from packager.lock.python import find_uv, resolve_wheels, uv_version

    target = spec.controller_target
    if target is None:
        raise LockError("the spec has no controller section", where="controller")
    digest = controller_digest(spec, requirements)
    if previous is not None and previous.spec_digest == digest:
        return previous
    uv_bin = find_uv(uv)
    py = PythonSection(requirements=requirements, index_url=spec.python.index_url)
    try:
        wheels = resolve_wheels(uv_bin, target, py, [])
    except LockError as exc:
        exc.message = f"controller (Python {target.python}, {target.python_platform}): {exc.message}"
        exc.where = "controller.requirements"
        raise
    return PythonLock(spec_digest=digest, wheels=wheels, resolver=uv_version(uv_bin))


# --- the packager's own wheel ---------------------------------------------------------------------------


def _source_files(root: Path) -> list[Path]:
    """What the wheel is built from: pyproject.toml, the readme and license files, the packager package."""
    files = [p for p in (root / "pyproject.toml", root / "README.md", root / "setup.cfg", root / "MANIFEST.in")
             if p.is_file()]
    files += sorted(p for p in root.glob("LICEN[CS]E*") if p.is_file())
    files += sorted(p for p in _walk(root / "packager") if p.suffix not in (".pyc", ".pyo"))
    return files


def _walk(top: Path) -> Iterator[Path]:
    """Regular files under ``top`` (symlinked files followed, symlinked folders not), caches left out."""
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.endswith(".egg-info"))
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if p.is_file():
                yield p


def packager_wheel(cache: Cache, root: Path, *, index_url: str) -> tuple[str, str, int]:
    """Build (or reuse) the wheel of this packager from ``root``; return (filename, sha256, size).

    The sources are copied to a scratch folder with normalised modes and built there by ``uv build --wheel``
    with ``SOURCE_DATE_EPOCH`` fixed, so the same source gives the same wheel bytes and the repository is
    left untouched. The result is cached by the digest of the sources.
    """
    from packager.lock.python import find_uv, uv_env

    files = _source_files(root)
    h = hashlib.sha256(f"{DIST_NAME} wheel, epoch {WHEEL_EPOCH}\n".encode())
    for p in files:
        h.update(p.relative_to(root).as_posix().encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest())
    record = cache.root / "built" / f"{DIST_NAME}-{h.hexdigest()}.json"
    try:
        known = json.loads(record.read_text(encoding="utf-8"))
        if cache.has(known["sha256"], known["size"]):
            return str(known["filename"]), str(known["sha256"]), int(known["size"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    uv = find_uv()
    with tempfile.TemporaryDirectory(prefix="airlock-wheel-") as tmp:
        src, out = Path(tmp) / "src", Path(tmp) / "out"
        for p in files:
            dst = src / p.relative_to(root)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p, dst)
            dst.chmod(0o644)
        env = uv_env()
        env["SOURCE_DATE_EPOCH"] = str(WHEEL_EPOCH)
        cmd = [uv, "build", "--wheel", "--no-config", "--quiet", "--python", sys.executable,
               "--default-index", index_url, "--out-dir", str(out), str(src)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=src,
                                  timeout=_BUILD_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise LockError(f"cannot build the packager's own wheel: {exc}", where=str(root)) from None
        wheels = sorted(out.glob("*.whl")) if out.is_dir() else []
        if proc.returncode != 0 or len(wheels) != 1:
            said = "\n    ".join((proc.stderr or proc.stdout).strip().splitlines()[-20:])
            raise LockError(f"cannot build the packager's own wheel (uv build):\n    {said}", where=str(root),
                            hint="the build backend (setuptools) comes from python.index_url; check it is reachable")
        whl = wheels[0]
        digest = cache.ingest(whl, what=whl.name)
        size = whl.stat().st_size
    record.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_record = tempfile.mkstemp(prefix=".record.", dir=record.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"filename": whl.name, "sha256": digest, "size": size}, f)
    Path(tmp_record).replace(record)
    log.info("controller: built %s (%d bytes)", whl.name, size)
    return whl.name, digest, size


# --- the deploy tree ------------------------------------------------------------------------------------


def deploy_tree(root: Path) -> list[tuple[str, Path]]:
    """(relative POSIX path, file) for every file of the deploy tree under ``root``, sorted. Caches, secret
    keys and, in a git checkout, whatever git ignores are left out."""
    found: dict[str, Path] = {}
    for rel in DEPLOY_PATHS:
        top = root / rel
        if top.is_file():
            found[rel] = top
        elif top.is_dir():
            for p in _walk(top):
                found[p.relative_to(root).as_posix()] = p
    kept = {r: p for r, p in found.items() if not r.endswith(_SKIP_SUFFIXES)}
    ignored = _git_ignored(root, sorted(kept))
    return sorted((r, p) for r, p in kept.items() if r not in ignored)


def _git_ignored(root: Path, rels: list[str]) -> set[str]:
    git = shutil.which("git")
    if git is None or not (root / ".git").exists() or not rels:
        return set()
    try:
        proc = subprocess.run([git, "-C", str(root), "check-ignore", "--stdin", "-z"], input="\0".join(rels),
                              capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return set()
    if proc.returncode not in (0, 1):  # 1: nothing ignored; 128: not a repository after all
        return set()
    return {r for r in proc.stdout.split("\0") if r}


# --- into the manifest ----------------------------------------------------------------------------------


def controller_files(spec: Spec, lock: PythonLock | None, cache: Cache) -> tuple[list[FileEntry], ControllerEntry]:
    """The ``controller/...`` files of the manifest (every blob put into the cache) and its summary."""
    target = spec.controller_target
    if target is None:
        raise LockError("the spec has no controller section", where="controller")
    if lock is None:
        raise LockError("the lock has no controller section", where="controller", hint="run the build again")
    files: list[FileEntry] = []
    for w in lock.wheels:
        size = w.size if w.size is not None else cache.path(w.sha256).stat().st_size
        files.append(FileEntry(path=f"controller/wheels/{w.filename}", sha256=w.sha256, size=size))
    root = source_root()
    packager_path: str | None = None
    deploy: list[tuple[str, Path]] = []
    if root is None:
        log.warning("controller: no source tree beside the packager (installed from a wheel?): the bundle "
                    "carries neither the packager's own wheel nor the deploy tree")
    else:
        name, digest, size = packager_wheel(cache, root, index_url=spec.python.index_url)
        packager_path = f"controller/wheels/{name}"
        files.append(FileEntry(path=packager_path, sha256=digest, size=size))
        deploy = deploy_tree(root)
        if not any(rel == "site.yml" for rel, _ in deploy):
            log.warning("controller: %s has no site.yml; the deploy tree is carried as it is", root)
    for rel, p in deploy:
        digest = cache.ingest(p, what=rel)
        files.append(FileEntry(path=f"controller/deploy/{rel}", sha256=digest, size=cache.path(digest).stat().st_size))
    script = (Path(__file__).parent / "bootstrap.py").read_bytes()
    files.append(FileEntry(path="controller/bootstrap.py", sha256=cache.put_bytes(script, "bootstrap.py"),
                           size=len(script)))
    core = next((w.version for w in lock.wheels if w.name == "ansible-core"), None)
    entry = ControllerEntry(python=target.python, arch=target.arch, manylinux=target.manylinux,
                            wheels=len(lock.wheels) + (packager_path is not None), ansible_core=core,
                            packager=packager_path, deploy_files=len(deploy))
    return files, entry

