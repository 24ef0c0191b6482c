"""The operator's own Python projects (``python.local``), built into wheels at every build.

A service of your own (this repository's ``services/``, say) must reach the target's venv like any other
package. Each folder is built by ``uv build`` (an sdist first, then the wheel from it, so only what the
project declares goes in) with ``SOURCE_DATE_EPOCH`` fixed: the same sources give the same bytes. The wheel
goes into the content-addressed cache and is resolved with the requirements, so its dependencies come too.
The lock records it as ``local:<folder as written in the spec>``; its digest is part of the python section's
digest, so an edited source re-resolves the wheels and an unchanged one reuses the lock.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from packager.cache import Cache
from packager.errors import LockError
from packager.spec import Spec, SpecFile

#: how the lock names a wheel built from a ``python.local`` folder
LOCAL_SCHEME = "local:"
#: zip timestamps of the built wheels (1980-01-01, the earliest a zip holds)
_EPOCH = "315532800"
_BUILD_TIMEOUT_S = 600


@dataclass(frozen=True)
class LocalWheel:
    entry: str  # the folder as the spec writes it
    name: str  # normalised distribution name
    version: str
    filename: str
    sha256: str
    size: int
    path: Path  # the built wheel, on this machine

    @property
    def requirement(self) -> str:
        return f"{self.name} @ {self.path.as_uri()}"

    @property
    def url(self) -> str:
        return LOCAL_SCHEME + self.entry


def build_local_wheels(specfile: SpecFile, cache: Cache) -> list[LocalWheel]:
    """Build every ``python.local`` folder; each wheel is kept in the cache. LockError names the folder."""
    out: list[LocalWheel] = []
    for i, entry in enumerate(specfile.spec.python.local):
        folder = specfile.resolve(entry)
        where = f"python.local[{i}] ({folder})"
        if not (folder / "pyproject.toml").is_file():
            raise LockError("not a Python project: no pyproject.toml in the folder", where=where,
                            hint="python.local lists project folders, relative to the spec")
        out.append(_build(entry, folder, cache, where, specfile.spec.python.index_url))
    names = [w.name for w in out]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise LockError(f"two folders build the same distribution {dup}", where="python.local",
                        hint="list each project once")
    return out


def _build(entry: str, folder: Path, cache: Cache, where: str, index_url: str) -> LocalWheel:
    from packager.lock.python import find_uv, uv_env

    uv = find_uv()
    env = uv_env()
    env["SOURCE_DATE_EPOCH"] = _EPOCH
    with tempfile.TemporaryDirectory(prefix="airlock-local-") as tmp:
        base = [uv, "build", "--no-config", "--quiet", "--python", sys.executable, "--default-index", index_url,
                "--out-dir", tmp]
        proc = None
        # the build backend comes from the index; with no network, uv's cache may still hold it
        for extra in ([], ["--offline"]):
            try:
                proc = subprocess.run([*base, *extra, str(folder)], capture_output=True, text=True, env=env,
                                      cwd=tmp, timeout=_BUILD_TIMEOUT_S, check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise LockError(f"cannot build the project: {exc}", where=where) from None
            if proc.returncode == 0:
                break
        wheels = sorted(Path(tmp).glob("*.whl"))
        if proc is None or proc.returncode != 0 or len(wheels) != 1:
            said = "\n    ".join(((proc.stderr or proc.stdout) if proc else "").strip().splitlines()[-15:])
            raise LockError(f"cannot build the project (uv build):\n    {said}", where=where,
                            hint="fix the project's build, or check that python.index_url serves its build backend")
        whl = wheels[0]
        try:
            name, version, _, _ = parse_wheel_filename(whl.name)
        except InvalidWheelFilename as exc:
            raise LockError(f"the build wrote an invalid wheel name: {exc}", where=where) from None
        digest = cache.ingest(whl, what=whl.name)
        size = whl.stat().st_size
        # the resolver needs a file named like a wheel: keep one beside the cache
        named = cache.root / "local-wheels" / digest[:16] / whl.name
        if not named.is_file():
            named.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(whl, named.with_name(named.name + ".tmp"))
            named.with_name(named.name + ".tmp").replace(named)
    return LocalWheel(entry=entry, name=str(name), version=str(version), filename=whl.name, sha256=digest,
                      size=size, path=named)


def python_digest(spec: Spec, local: list[LocalWheel]) -> str:
    """The python lock's spec digest: the section, plus the bytes of every local wheel when there are any."""
    digest = spec.section_digest("python")
    if not local:
        return digest
    h = hashlib.sha256(digest.encode())
    for w in local:
        h.update(f"\n{w.entry}\0{w.filename}\0{w.sha256}".encode())
    return h.hexdigest()
