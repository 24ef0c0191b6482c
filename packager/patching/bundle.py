"""The bundle's ``patches/`` tree (docs/patches.md), made from the real wheels in the cache.

Each applicable patch's files are read from the very wheel the bundle carries, checked against ``before``,
patched with the catalogue's diff and checked against ``after``: what the hosts receive is proven here.
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packager.bundle.manifest import FileEntry, PatchEntry
from packager.cache import Cache
from packager.errors import PatchError
from packager.patching.classify import Decision
from packager.patching.unidiff import apply_file

INDEX = "patches/index.json"
INDEX_SCHEMA = "airlock-patches/1"


@dataclass(frozen=True)
class PatchesInfo:
    entries: tuple[PatchEntry, ...]  # for the manifest, sorted by id
    index: dict[str, Any]  # the content of patches/index.json


def wheel_member(names: set[str], path: str) -> str | None:
    """The wheel member holding site-packages ``path``: the path itself, or ``*.data/{purelib,platlib}/path``."""
    if path in names:
        return path
    return next((n for n in sorted(names) if re.match(r"^[^/]+\.data/(purelib|platlib)/", n)
                 and n.split("/", 2)[2] == path), None)


def read_wheel_files(wheel: Path, paths: Iterable[str]) -> dict[str, bytes | None]:
    """The named site-packages files from a wheel on disk (None for one it lacks)."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            names = set(zf.namelist())
            out: dict[str, bytes | None] = {}
            for p in paths:
                member = wheel_member(names, p)
                out[p] = zf.read(member) if member is not None else None
            return out
    except (OSError, zipfile.BadZipFile) as exc:
        raise PatchError(f"cannot read the wheel: {exc}", where=str(wheel)) from None


def _put(cache: Cache, logical: str, raw: bytes) -> FileEntry:
    return FileEntry(path=logical, sha256=cache.put_bytes(raw, logical), size=len(raw))


def bundle_patches(decisions: Iterable[Decision], cache: Cache,
                   wheels: Mapping[str, str]) -> tuple[list[FileEntry], PatchesInfo]:
    """The bundle files for ``decisions`` and the manifest entries.

    ``wheels``: normalised distribution name -> sha256 of the wheel the bundle carries (a blob in ``cache``).
    PatchError, naming library, version and file, when a wheel's file is not what the patch pins.
    """
    files: list[FileEntry] = []
    applies: list[dict[str, Any]] = []
    not_needed: list[dict[str, str]] = []
    unchecked: list[dict[str, str]] = []
    entries: list[PatchEntry] = []
    for d in sorted(decisions, key=lambda x: x.id):
        entries.append(PatchEntry(id=d.id, distribution=d.distribution, version=d.version, status=d.status))
        short = {"id": d.id, "distribution": d.distribution, "version": d.version}
        if d.status == "not_needed":
            not_needed.append(short)
            continue
        if d.status == "unchecked" or d.variant is None:
            unchecked.append(short)
            continue
        digest = wheels.get(d.distribution)
        if digest is None or not cache.has(digest):
            raise PatchError(f"patch {d.id}: the wheel of {d.distribution} {d.version} is not in the cache",
                             where=str(cache.root), hint="run the build again; it fetches what is missing")
        wheel = cache.path(digest)
        variant = d.variant
        diffs = {fd.path: fd for fd in d.patch.diff_of(variant)}
        found = read_wheel_files(wheel, sorted(variant.files))
        root = f"patches/{d.id}"
        listed: list[dict[str, str]] = []
        for path, h in sorted(variant.files.items()):
            what = f"{d.distribution} {d.version}: {path}"
            before = found[path]
            if before is None:
                raise PatchError(f"{what}: not in the wheel; patch {d.id} cannot apply", where=str(wheel))
            got = hashlib.sha256(before).hexdigest()
            if got != h.before:
                raise PatchError(f"{what}: expected sha256 {h.before} (patch {d.id}, before), found {got}",
                                 where=str(wheel), hint="the release differs from the one checked: fix the "
                                 "catalogue's range for this version (patches check) or skip the patch")
            after = apply_file(diffs[path], before, where=f"{d.id}: {d.patch.diff_path(variant)}: {path}")
            got = hashlib.sha256(after).hexdigest()
            if got != h.after:
                raise PatchError(f"{what}: the diff gives sha256 {got}, patch {d.id} pins {h.after} (after)",
                                 where=str(d.patch.diff_path(variant)))
            files.append(_put(cache, f"{root}/before/{path}", before))
            files.append(_put(cache, f"{root}/after/{path}", after))
            listed.append({"path": path, "before": h.before, "after": h.after})
        try:
            diff_raw = d.patch.diff_path(variant).read_bytes()
        except OSError as exc:
            raise PatchError(f"cannot read the diff: {exc.strerror}", where=str(d.patch.diff_path(variant))) from None
        files.append(_put(cache, f"{root}/{variant.diff}", diff_raw))
        m = d.patch.meta
        applies.append({"id": d.id, "distribution": d.distribution, "version": d.version, "summary": m.summary,
                        "why": m.why, "upstream": m.upstream, "diff": f"{root}/{variant.diff}", "files": listed})
    index: dict[str, Any] = {"schema": INDEX_SCHEMA, "patches": applies, "not_needed": not_needed,
                             "unchecked": unchecked}
    raw = (json.dumps(index, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
    files.append(_put(cache, INDEX, raw))
    return files, PatchesInfo(tuple(entries), index)
