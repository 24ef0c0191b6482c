"""The signed root of a bundle: ``manifest.json``. Every logical file with its sha256 and size.

Layout of a bundle directory::

    <name>-<version>/
        manifest.json            canonical JSON (sorted keys), the only signed file
        manifest.json.minisig    minisign signature over manifest.json
        blobs/sha256/<digest>    each distinct content once

Everything else is proven by the digests the manifest lists.
"""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from packager.errors import BundleError

SCHEMA = "airlock.bundle/v1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.json.minisig"
BLOBS = "blobs/sha256"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FileEntry(_Frozen):
    path: str  # logical path: wheels/<file>.whl, models/<name>/<rel>, meta/models.yaml, controller/..., apt/...
    sha256: str
    size: int = Field(ge=0)

    @field_validator("path")
    @classmethod
    def _safe(cls, v: str) -> str:
        p = PurePosixPath(v)
        if p.is_absolute() or ".." in p.parts or "\\" in v or v != str(p) or not v:
            raise ValueError(f"unsafe logical path {v!r}")
        return v

    @field_validator("sha256")
    @classmethod
    def _hex(cls, v: str) -> str:
        if not _HEX64.match(v):
            raise ValueError(f"not a sha256 hex digest: {v!r}")
        return v


class PackageEntry(_Frozen):
    name: str
    version: str
    file: str  # logical path of the wheel


class ModelEntry(_Frozen):
    name: str
    source: Literal["huggingface", "modelscope", "local"]
    repo: str | None = None
    revision: str | None = None
    commit: str | None = None
    root: str  # logical folder: models/<name>
    files: int
    size: int


class DebEntry(_Frozen):
    """One .deb of the bundle's apt repository (``apt/``)."""

    name: str
    version: str
    arch: str
    file: str  # logical path: apt/pool/<file>.deb


class ControllerEntry(_Frozen):
    """What the bundle carries for the offline control node, under ``controller/``."""

    python: str  # the control node's Python, e.g. "3.11": the wheels only install there
    arch: str
    manylinux: str
    wheels: int  # controller/wheels/*.whl, the packager's own wheel included
    ansible_core: str | None = None  # version of the ansible-core wheel, if any
    packager: str | None = None  # logical path of the packager's own wheel
    deploy_files: int = 0  # files under controller/deploy/
    bootstrap: str = "controller/bootstrap.py"


class PatchEntry(_Frozen):
    """One catalogue patch for a distribution the bundle carries (docs/patches.md): what the build decided."""

    id: str
    distribution: str  # normalised
    version: str  # the resolved version in the bundle
    status: Literal["applies", "not_needed", "unchecked"]


class BaseRef(_Frozen):
    """What a delta bundle leaves to the full bundle it was made against (docs/delta.md).

    The delta's manifest lists every file of the release; the blobs in ``provides`` are not in the delta
    but in the base, which is named by the sha256 of its ``manifest.json`` bytes. Signed with the rest."""

    name: str
    version: str
    manifest_sha256: str  # sha256 of the base bundle's manifest.json, byte for byte
    provides: list[str]  # sorted digests of this release's blobs that only the base carries

    @field_validator("manifest_sha256")
    @classmethod
    def _hex(cls, v: str) -> str:
        if not _HEX64.match(v):
            raise ValueError(f"not a sha256 hex digest: {v!r}")
        return v

    @field_validator("provides")
    @classmethod
    def _digests(cls, v: list[str]) -> list[str]:
        bad = [d for d in v if not _HEX64.match(d)]
        if bad:
            raise ValueError(f"not a sha256 hex digest: {bad[0]!r}")
        if v != sorted(set(v)):
            raise ValueError("provides must be sorted and without duplicates")
        return v


class Provenance(_Frozen):
    packager_version: str
    spec_sha256: str
    lock_sha256: str
    created: str  # ISO 8601 UTC; from SOURCE_DATE_EPOCH when set


class Manifest(_Frozen):
    schema_: str = Field(alias="schema", default=SCHEMA)
    bundle: dict[str, str]
    target: dict[str, str | None]
    provenance: Provenance
    packages: list[PackageEntry]
    models: list[ModelEntry]
    files: list[FileEntry]
    controller: ControllerEntry | None = None
    #: the .debs of the flat apt repository under ``apt/`` (None: the bundle carries no system packages)
    system_packages: list[DebEntry] | None = None
    #: the catalogue patches for the bundle's distributions (None: none concerns it); files under ``patches/``
    patches: list[PatchEntry] | None = None
    #: set on a delta bundle: the full bundle that carries the blobs this one leaves out (None: a full bundle)
    base: BaseRef | None = None

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @property
    def name(self) -> str:
        return self.bundle["name"]

    @property
    def version(self) -> str:
        return self.bundle["version"]

    @property
    def dirname(self) -> str:
        if self.base is not None:
            return f"{self.name}-{self.version}-delta-from-{self.base.version}"
        return f"{self.name}-{self.version}"

    def blobs(self) -> dict[str, int]:
        """Distinct digests with their sizes."""
        return {f.sha256: f.size for f in self.files}

    def carried(self) -> dict[str, int]:
        """The blobs the bundle itself holds: all of them, except those a delta leaves to its base."""
        blobs = self.blobs()
        if self.base is None:
            return blobs
        provided = set(self.base.provides)
        return {d: s for d, s in blobs.items() if d not in provided}

    def full(self) -> Manifest:
        """The release's manifest as the full bundle has it: without the base reference."""
        return self if self.base is None else self.model_copy(update={"base": None})

    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    def dumps(self) -> bytes:
        data = self.model_dump(mode="json", by_alias=True)
        for key in ("controller", "system_packages", "patches", "base"):
            if data[key] is None:
                del data[key]  # manifests without a control node, system packages, patches or base stay as before
        return (json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


def parse_manifest(raw: bytes, source: str) -> Manifest:
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"manifest is not valid JSON: {exc}", where=source) from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise BundleError(f"unsupported manifest schema {found!r} (this packager reads {SCHEMA})", where=source,
                          hint="use the packager version that built the bundle")
    try:
        m = Manifest.model_validate(data)
    except ValidationError as exc:
        raise BundleError(f"manifest is malformed: {exc}", where=source) from None
    seen: dict[str, FileEntry] = {}
    for f in m.files:
        if f.path in seen:
            raise BundleError(f"manifest lists {f.path} twice", where=source)
        seen[f.path] = f
    sizes: dict[str, int] = {}
    for f in m.files:
        if sizes.setdefault(f.sha256, f.size) != f.size:
            raise BundleError(f"manifest gives two sizes for blob {f.sha256}", where=source)
    if m.base is not None:
        unknown = [d for d in m.base.provides if d not in sizes]
        if unknown:
            raise BundleError(f"the base reference names blob {unknown[0]}, which no file of the manifest uses",
                              where=source)
    return m


def read_manifest_bytes(bundle: Path) -> bytes:
    path = bundle / MANIFEST
    if not bundle.is_dir():
        raise BundleError("bundle directory not found", where=str(bundle),
                          hint="pass the folder that holds manifest.json")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise BundleError("no manifest.json in the bundle", where=str(bundle),
                          hint="pass the bundle folder (dist/<name>-<version>), not its parent") from None
    return raw


def read_manifest(bundle: Path) -> Manifest:
    """Parse a bundle's manifest WITHOUT checking its signature (inspect without a key)."""
    return parse_manifest(read_manifest_bytes(bundle), str(bundle / MANIFEST))
