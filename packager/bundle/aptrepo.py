"""The bundle's flat apt repository: ``apt/pool/*.deb`` with a generated ``Packages``, ``Packages.gz`` and ``Release``.

A host uses it as ``deb [trusted=yes] file:/opt/airlock/current/apt ./``. ``trusted=yes`` is sound here
because apt's own signature is not what protects these files: the bundle's signed manifest lists every one
of them (index and debs) with its sha256, the bundle is verified before it is unpacked, and each host
re-checks every blob it receives against that manifest. The index is generated from the lock alone, so the
same lock gives byte-identical files (gzip with mtime 0; the Release date from ``SOURCE_DATE_EPOCH``).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import gzip
import hashlib

from packager.bundle.manifest import DebEntry, FileEntry
from packager.cache import Cache
from packager.lock import AptLock, DebLock
from packager.lock.apt import INDEX_FIELDS

__all__ = ["APT_ROOT", "apt_repo_files", "packages_index", "release_file"]

APT_ROOT = "apt"


def _stanza(deb: DebLock) -> str:
    fields = {k: deb.fields[k] for k in INDEX_FIELDS if k in deb.fields}
    fields.update(Package=deb.package, Version=deb.version, Architecture=deb.arch)
    ordered = [(k, fields[k]) for k in INDEX_FIELDS if k in fields]
    ordered += [("Filename", f"pool/{deb.filename}"), ("Size", str(deb.size)), ("SHA256", deb.sha256)]
    return "".join(f"{k}: {v}\n" for k, v in ordered)


def packages_index(debs: list[DebLock]) -> bytes:
    """The ``Packages`` file of the flat repository: one stanza per deb, sorted, Filename under ``pool/``."""
    ordered = sorted(debs, key=lambda d: (d.package, d.version, d.arch))
    return "\n".join(_stanza(d) for d in ordered).encode("utf-8")


def release_file(index: dict[str, bytes], *, arch: str, label: str, version: str, when: dt.datetime) -> bytes:
    """The ``Release`` file: what the repository is and the SHA256 of each index file."""
    lines = [
        "Origin: Airlock",
        f"Label: {label}",
        f"Suite: {label}",
        f"Version: {version}",
        f"Date: {email.utils.format_datetime(when.astimezone(dt.UTC), usegmt=True).replace('GMT', 'UTC')}",
        f"Architectures: {arch}",
        f"Description: system packages of the Airlock bundle {label} {version}; its signed manifest vouches "
        "for every file",
        "SHA256:",
    ]
    lines += [f" {hashlib.sha256(raw).hexdigest()} {len(raw):>16} {name}" for name, raw in sorted(index.items())]
    return ("\n".join(lines) + "\n").encode("utf-8")


def apt_repo_files(apt: AptLock, cache: Cache, *, label: str, version: str,
                   when: dt.datetime) -> tuple[list[FileEntry], list[DebEntry]]:
    """Logical files of ``apt/`` (the debs, already in the cache, and the generated index, put into it now)
    and the manifest's list of system packages."""
    files = [FileEntry(path=f"{APT_ROOT}/pool/{d.filename}", sha256=d.sha256, size=d.size) for d in apt.debs]
    packages = packages_index(apt.debs)
    index = {"Packages": packages, "Packages.gz": gzip.compress(packages, compresslevel=9, mtime=0)}
    generated = {**index, "Release": release_file(index, arch=apt.arch, label=label, version=version, when=when)}
    for name, raw in generated.items():
        logical = f"{APT_ROOT}/{name}"
        files.append(FileEntry(path=logical, sha256=cache.put_bytes(raw, logical.replace("/", "-")), size=len(raw)))
    entries = [DebEntry(name=d.package, version=d.version, arch=d.arch, file=f"{APT_ROOT}/pool/{d.filename}")
               for d in sorted(apt.debs, key=lambda d: (d.package, d.version, d.arch))]
    return files, entries
