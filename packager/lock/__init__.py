"""The lock: everything the spec resolves to, pinned. Written beside the spec as ``models.lock`` (JSON).

A later build from an unchanged lock resolves nothing again. Each section remembers the digest of the
spec section it came from, so a change to the models does not re-resolve the wheels and vice versa.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from packager.errors import LockError

LOCK_SCHEMA = 1


@functools.cache
def tool_version(binary: str, name: str) -> str:
    """``NAME X.Y.Z`` of a resolver (uv, apt-get), as the lock records it. LockError if it does not run."""
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise LockError(f"{name} does not run: {exc}", where=binary) from None
    m = re.match(rf"{re.escape(name)}\s+(\S+)", out.strip())
    return f"{name} {m.group(1)}" if m else (out.strip().splitlines() or [name])[0]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class WheelLock(_Frozen):
    """One wheel for the target: where it comes from and what its bytes must hash to."""

    name: str  # normalised distribution name
    version: str  # full version, local label included (2.13.0+cpu)
    filename: str
    url: str  # https://..., or file:///... for a find-links folder
    sha256: str
    size: int | None = None  # not every index publishes sizes; fetch records the real one


class FileLock(_Frozen):
    path: str  # relative path inside the model, POSIX separators
    sha256: str
    size: int


class ModelLock(_Frozen):
    name: str
    source: Literal["huggingface", "modelscope", "local"]
    repo: str | None = None
    revision: str | None = None  # what the spec asked for (branch, tag or commit)
    commit: str | None = None  # what it resolved to: immutable
    path: str | None = None  # local models: the absolute source folder
    files: list[FileLock]


class PythonLock(_Frozen):
    spec_digest: str
    wheels: list[WheelLock]
    resolver: str  # e.g. "uv 0.9.5"


class ModelsLock(_Frozen):
    spec_digest: str
    models: list[ModelLock]


class DebLock(_Frozen):
    """One .deb for the target: where it comes from, what its bytes must hash to, and its index stanza."""

    package: str
    version: str
    arch: str  # amd64, arm64 or all
    filename: str  # pool file name: the bundle carries it as apt/pool/<filename>
    url: str  # http(s)://... from an apt source, or file:///... for a deb the spec lists
    sha256: str
    size: int
    #: the Packages stanza fields the bundle's index is generated from (Package, Version, Architecture,
    #: Depends, ..., Description's first line); Filename, Size and SHA256 are written from the fields above
    fields: dict[str, str]


class AptLock(_Frozen):
    spec_digest: str  # of system_packages + target os/arch, the base snapshot and the keyrings
    arch: str  # the apt architecture resolved for: amd64 or arm64
    base: str  # built-in snapshot name or path of the dpkg status file
    base_sha256: str
    debs: list[DebLock]
    resolver: str  # e.g. "apt 2.6.1"


class Lock(_Frozen):
    schema_version: int = LOCK_SCHEMA
    python: PythonLock | None = None
    models: ModelsLock | None = None
    #: wheels for the offline control node (``spec.controller``), resolved for its own Python and platform
    controller: PythonLock | None = None
    #: .debs for the target (``spec.system_packages.apt``), resolved by apt against the base package set
    apt: AptLock | None = None

    def dumps(self) -> str:
        data = self.model_dump(mode="json")
        for section in ("controller", "apt"):
            if data[section] is None:
                del data[section]  # locks of specs without these sections stay as they were
        return json.dumps(data, indent=2, sort_keys=True) + "\n"


def read_lock(path: Path) -> Lock | None:
    """Return the lock at ``path``, or None when there is none. A corrupt lock is an error, never ignored."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
        if data.get("schema_version") != LOCK_SCHEMA:
            raise LockError(
                f"lock schema {data.get('schema_version')!r} is not the supported {LOCK_SCHEMA}",
                where=str(path),
                hint="rebuild it with --relock",
            )
        return Lock.model_validate(data)
    except (json.JSONDecodeError, ValidationError, AttributeError) as exc:
        raise LockError(f"lock file is corrupt: {exc}", where=str(path), hint="delete it or pass --relock") from None


def write_lock(path: Path, lock: Lock) -> None:
    """Write atomically: a crash leaves the old lock or the new one, never half of either."""
    fd, tmp = tempfile.mkstemp(prefix=".models.lock.", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)  # a lock is shared like any source file, not private like mkstemp's 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(lock.dumps())
        Path(tmp).replace(path)
    finally:
        Path(tmp).unlink(missing_ok=True)
