"""Apply, revert and report catalogue patches in a Python virtual environment (the packager's side of what the
``offline_patches`` role does on the hosts from a bundle).

Every file of every applicable patch is checked before a single one changes: a file hashing to ``before`` is
patched, one hashing to ``after`` is already patched, anything else stops the run with nothing changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import logging
import os
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from packaging.utils import canonicalize_name

from packager.errors import PatchError
from packager.patching.classify import Decision, Status, classify
from packager.patching.meta import Patch
from packager.patching.unidiff import apply_file

log = logging.getLogger("packager")

#: what was applied, beside the venv's bin/ and lib/: the same record the hosts' ``airlock-patch`` keeps
#: (roles/offline_patches), there with ``patches_dir`` the bundle's patches folder, here ``catalogue:<folders>``
RECORD = ".airlock-patches.json"
RECORD_SCHEMA = "airlock-patches-applied/1"

FileState = Literal["before", "after", "other", "missing"]
PatchState = Literal["applied", "not_applied", "partial", "mismatch", "not_applicable"]


def site_packages(venv: Path) -> Path:
    """``<venv>/lib/python3.X/site-packages`` (exactly one), or PatchError."""
    found = sorted(p for p in venv.glob("lib/python3*/site-packages") if p.is_dir())
    if len(found) != 1:
        what = "no" if not found else f"{len(found)}"
        raise PatchError(f"{what} lib/python3.*/site-packages folder(s) in the venv", where=str(venv),
                         hint="pass the folder that holds bin/ and lib/ of a virtual environment")
    return found[0]


def installed_versions(venv: Path) -> dict[str, str]:
    """Normalised distribution name -> version of everything installed in the venv."""
    out: dict[str, str] = {}
    for d in importlib.metadata.distributions(path=[str(site_packages(venv))]):
        name = d.metadata["Name"]
        if name:
            out.setdefault(canonicalize_name(name), d.version)
    return out


def installed_version(venv: Path, dist: str) -> str | None:
    """The installed version of ``dist`` (any spelling), None when it is not installed."""
    return installed_versions(venv).get(canonicalize_name(dist))


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


@dataclass(frozen=True)
class FileCheck:
    path: str  # relative to site-packages
    before: str
    after: str
    found: str | None  # None: the file is missing

    @property
    def state(self) -> FileState:
        if self.found is None:
            return "missing"
        return "before" if self.found == self.before else "after" if self.found == self.after else "other"


@dataclass(frozen=True)
class VenvPatch:
    """One catalogue patch for the distribution as installed in the venv."""

    id: str
    distribution: str
    version: str
    status: Status  # what the catalogue says about this version
    files: tuple[FileCheck, ...] = ()  # the variant's files (status "applies" only)
    changed: tuple[str, ...] = ()  # files apply/revert wrote in this run

    @property
    def state(self) -> PatchState:
        if self.status != "applies":
            return "not_applicable"
        states = {f.state for f in self.files}
        if states <= {"after"}:
            return "applied"
        if states <= {"before"}:
            return "not_applied"
        return "partial" if states <= {"before", "after"} else "mismatch"


def _checks(site: Path, d: Decision) -> tuple[FileCheck, ...]:
    assert d.variant is not None
    files = sorted(d.variant.files.items())
    return tuple(FileCheck(path, h.before, h.after, _sha256(site / path)) for path, h in files)


def _decisions(venv: Path, patches: Iterable[Patch]) -> tuple[Path, list[Decision]]:
    site = site_packages(venv)
    decisions = classify(patches, installed_versions(venv))
    seen: dict[str, str] = {}
    for d in decisions:
        if d.variant is None:
            continue
        for path in d.variant.files:
            if path in seen:
                raise PatchError(f"patches {seen[path]} and {d.id} both change {path}; one patch per file",
                                 where=str(site / path))
            seen[path] = d.id
    return site, decisions


def status_venv(venv: Path, patches: Iterable[Patch]) -> list[VenvPatch]:
    """What each catalogue patch whose distribution is installed looks like in the venv (nothing changes)."""
    site, decisions = _decisions(venv, patches)
    return [VenvPatch(d.id, d.distribution, d.version, d.status, _checks(site, d) if d.variant else ())
            for d in decisions]


def _mismatch(site: Path, d: Decision, f: FileCheck, want: str) -> PatchError:
    found = "the file is missing" if f.found is None else f"found sha256 {f.found}"
    return PatchError(
        f"{d.distribution} {d.version}: {f.path}: expected sha256 {want} (before, unpatched) or {f.after} "
        f"(after, patched), {found}; patch {d.id} not applied and nothing changed" if want == f.before else
        f"{d.distribution} {d.version}: {f.path}: expected sha256 {want} (after, patched) or {f.before} "
        f"(before, unpatched), {found}; patch {d.id} not reverted and nothing changed",
        where=str(site / f.path),
        hint="the installed file is not the one the catalogue pins: reinstall the wheel, or check the version "
             "and add a variant for it to the catalogue",
    )


def _change(venv: Path, patches: Iterable[Patch], *, reverse: bool) -> list[VenvPatch]:
    site, decisions = _decisions(venv, patches)
    if not reverse:
        _refuse_foreign(venv, read_record(venv))
    plan: list[tuple[Decision, list[tuple[FileCheck, bytes]]]] = []
    want_state: FileState = "after" if reverse else "before"
    # 1. check every file of every applicable patch; compute the new contents; raise before writing anything
    for d in decisions:
        if d.variant is None:
            continue
        diffs = {fd.path: fd for fd in d.patch.diff_of(d.variant)}
        writes: list[tuple[FileCheck, bytes]] = []
        for f in _checks(site, d):
            if f.state == ("before" if reverse else "after"):
                continue  # already in the wanted state
            if f.state != want_state:
                raise _mismatch(site, d, f, f.after if reverse else f.before)
            new = apply_file(diffs[f.path], (site / f.path).read_bytes(), reverse=reverse,
                             where=f"{d.id}: {d.patch.diff_path(d.variant)}: {f.path}")
            target = f.before if reverse else f.after
            got = hashlib.sha256(new).hexdigest()
            if got != target:
                raise PatchError(f"{d.distribution} {d.version}: {f.path}: the diff gives sha256 {got}, the "
                                 f"catalogue pins {target}; nothing changed", where=str(d.patch.diff_path(d.variant)),
                                 hint=f"patch {d.id}: fix the diff or the hashes in patch.yaml")
            writes.append((f, new))
        plan.append((d, writes))
    # 2. write
    written: list[Path] = []
    for _, writes in plan:
        for f, new in writes:
            _write_atomic(site / f.path, new)
            written.append(site / f.path)
    _record(venv, [d for d, _ in plan], reverse=reverse)
    if written:
        _recompile(venv, written)
    results = []
    for d in decisions:
        changed = next((tuple(f.path for f, _ in w) for dd, w in plan if dd is d), ())
        results.append(VenvPatch(d.id, d.distribution, d.version, d.status,
                                 _checks(site, d) if d.variant else (), changed))
    return results


def apply_venv(venv: Path, patches: Iterable[Patch]) -> list[VenvPatch]:
    """Apply every patch whose distribution is installed at a version one of its variants covers. Idempotent."""
    return _change(venv, patches, reverse=False)


def revert_venv(venv: Path, patches: Iterable[Patch]) -> list[VenvPatch]:
    """Put back the files as the wheels ship them (reversing each applicable patch's diff). Idempotent."""
    return _change(venv, patches, reverse=True)


def _write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically (temporary file beside it, then rename), keeping its mode."""
    mode = path.stat().st_mode & 0o7777 if path.exists() else 0o644
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".airlock-tmp", dir=path.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.chmod(mode)
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def read_record(venv: Path) -> dict[str, Any] | None:
    """The venv's record of applied patches (the shape the hosts' ``airlock-patch`` writes), None if absent."""
    path = venv / RECORD
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise PatchError(f"unreadable record of applied patches: {exc}", where=str(path),
                         hint="move it aside and run again") from None
    if not isinstance(data, dict) or data.get("schema") != RECORD_SCHEMA or not isinstance(data.get("patches"), list):
        raise PatchError(f"not an {RECORD_SCHEMA} record of applied patches", where=str(path),
                         hint="move it aside and run again")
    return data


def _source(decisions: list[Decision]) -> str:
    """What the record names as the patches' origin: ``catalogue:<folder>[:<folder>...]``."""
    return "catalogue:" + os.pathsep.join(sorted({str(d.patch.folder.parent) for d in decisions}))


def _refuse_foreign(venv: Path, record: dict[str, Any] | None) -> None:
    """A venv patched from a bundle (by the hosts' airlock-patch) is reverted with that first."""
    if record and record["patches"] and not str(record.get("patches_dir", "")).startswith("catalogue:"):
        raise PatchError(f"the venv was patched from the bundle's {record.get('patches_dir')} (recorded in {RECORD})",
                         where=str(venv), hint=f"run `airlock-patch revert --venv {venv}` first")


def _record(venv: Path, decisions: list[Decision], *, reverse: bool) -> None:
    path = venv / RECORD
    old = read_record(venv)
    ids = {d.id for d in decisions}
    kept = [e for e in (old or {}).get("patches", []) if not (isinstance(e, dict) and e.get("id") in ids)]
    if not reverse:
        for d in decisions:
            assert d.variant is not None
            kept.append({"id": d.id, "distribution": d.distribution, "version": d.version,
                         "files": [{"path": p, "before": h.before, "after": h.after}
                                   for p, h in sorted(d.variant.files.items())]})
    if not kept:
        path.unlink(missing_ok=True)  # nothing applied: no record, as before the first apply
        return
    kept.sort(key=lambda e: str(e.get("id")))
    pdir = (old or {}).get("patches_dir") if reverse or not decisions else _source(decisions)
    new = {"schema": RECORD_SCHEMA, "patches_dir": pdir, "patches": kept}
    if new != old:
        _write_atomic(path, (json.dumps(new, indent=2, sort_keys=True) + "\n").encode())


def _recompile(venv: Path, files: list[Path]) -> None:
    """Byte-compile the changed files with the venv's own Python (its .pyc tag), so imports need not write."""
    python = next((p for p in (venv / "bin" / "python", venv / "bin" / "python3") if p.exists()), None)
    if python is None:
        log.warning("patches: no bin/python in %s; the changed files' .pyc are rebuilt on first import", venv)
        return
    r = subprocess.run([str(python), "-m", "compileall", "-q", "-f", *map(str, files)], capture_output=True,
                       text=True, timeout=300, check=False)
    if r.returncode != 0:
        log.warning("patches: compileall failed for %s: %s", ", ".join(map(str, files)), (r.stdout + r.stderr)[-500:])
