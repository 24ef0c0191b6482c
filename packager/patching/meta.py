"""The catalogue of offline patches: ``packager/patches/<id>/patch.yaml`` plus its diffs (docs/patches.md)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Annotated, Any

import yaml
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from packager.errors import PatchError, SpecError
from packager.patching.unidiff import FileDiff, parse_diff

if TYPE_CHECKING:
    from packager.spec import SpecFile

#: the catalogue shipped with the packager
BUILTIN_CATALOG = Path(__file__).resolve().parent.parent / "patches"
PATCH_FILE = "patch.yaml"
ID_RE = re.compile(r"^[a-z0-9][a-z0-9.-]*$")
_HEX64 = r"^[0-9a-f]{64}$"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _specifier(v: str) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ValueError("a PEP 440 specifier set such as \">=1.14,<1.20\" (quoted)")
    try:
        SpecifierSet(v)
    except InvalidSpecifier as exc:
        raise ValueError(f"not a PEP 440 specifier set: {exc}") from None
    return v


def _rel_path(v: str) -> str:
    p = PurePosixPath(v)
    if not v or p.is_absolute() or ".." in p.parts or "\\" in v or str(p) != v:
        raise ValueError(f"{v!r} is not a relative POSIX path inside site-packages")
    return v


Versions = Annotated[str, AfterValidator(_specifier)]
RelPath = Annotated[str, AfterValidator(_rel_path)]
Sha256 = Annotated[str, Field(pattern=_HEX64)]


class FileHashes(_Frozen):
    before: Sha256
    after: Sha256

    @model_validator(mode="after")
    def _changes(self) -> FileHashes:
        if self.before == self.after:
            raise ValueError("before and after are the same hash: the diff would change nothing")
        return self


class Variant(_Frozen):
    versions: Versions
    diff: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]  # a file beside patch.yaml
    files: Annotated[dict[RelPath, FileHashes], Field(min_length=1)]

    @property
    def specifier(self) -> SpecifierSet:
        return SpecifierSet(self.versions)


class Evidence(_Frozen):
    file: RelPath
    contains: Annotated[str, Field(min_length=1)]


class Fixed(_Frozen):
    versions: Versions
    evidence: Evidence

    @property
    def specifier(self) -> SpecifierSet:
        return SpecifierSet(self.versions)


class PatchMeta(_Frozen):
    distribution: Annotated[str, Field(pattern=r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")]
    summary: Annotated[str, Field(min_length=1)]
    why: Annotated[str, Field(min_length=1)]
    upstream: str
    variants: Annotated[list[Variant], Field(min_length=1)]
    fixed: list[Fixed] = Field(default_factory=list)

    @field_validator("upstream")
    @classmethod
    def _upstream(cls, v: str) -> str:
        if re.match(r"^https?://\S+$", v) or re.match(r"^none:\s*\S", v):
            return v
        raise ValueError("an issue or pull request URL (https://...), or \"none: <reason>\"")

    @property
    def dist(self) -> str:
        """The distribution name, normalised (PEP 503)."""
        return canonicalize_name(self.distribution)


@dataclass(frozen=True)
class Patch:
    """One catalogue entry: its id (the folder name), the folder, the parsed patch.yaml and its diffs."""

    id: str
    folder: Path
    meta: PatchMeta
    diffs: dict[str, tuple[FileDiff, ...]] = field(default_factory=dict, compare=False, repr=False)  # by file name

    @property
    def dist(self) -> str:
        return self.meta.dist

    def diff_path(self, variant: Variant) -> Path:
        return self.folder / variant.diff

    def diff_of(self, variant: Variant) -> tuple[FileDiff, ...]:
        return self.diffs[variant.diff]


def _describe(err: dict[str, Any]) -> str:
    loc = ".".join(str(p) for p in err["loc"]) or "<top>"
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown key (see docs/patches.md for the allowed keys)"
    elif err["type"] == "missing":
        msg = "required field is missing"
    elif "input" in err and not isinstance(err["input"], (dict, list)):
        msg += f" (got {err['input']!r})"
    return f"{loc}: {msg}"


def load_patch(folder: Path) -> Patch:
    """Read and validate one catalogue entry. PatchError names the file and field of every problem."""
    pid = folder.name
    where = str(folder / PATCH_FILE)
    if not ID_RE.match(pid):
        raise PatchError(f"patch id {pid!r} (the folder name) must match {ID_RE.pattern}", where=str(folder))
    try:
        data = yaml.safe_load((folder / PATCH_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PatchError(f"no {PATCH_FILE} in the patch folder", where=str(folder)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PatchError(f"cannot read: {exc}", where=where) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise PatchError(f"not valid YAML: {getattr(exc, 'problem', exc)}",
                         where=f"{where}:{mark.line + 1}" if mark is not None else where) from None
    if not isinstance(data, dict):
        raise PatchError("patch.yaml must be a mapping (distribution, summary, why, upstream, variants)", where=where)
    try:
        meta = PatchMeta.model_validate(data)
    except ValidationError as exc:
        problems = [_describe(dict(e)) for e in exc.errors()]
        raise PatchError(f"{len(problems)} problem(s):\n  " + "\n  ".join(problems), where=where) from None
    diffs: dict[str, tuple[FileDiff, ...]] = {}
    for i, v in enumerate(meta.variants):
        if v.diff == PATCH_FILE:
            raise PatchError(f"variants.{i}.diff: names patch.yaml itself", where=where)
        if v.diff not in diffs:
            path = folder / v.diff
            try:
                raw = path.read_bytes()
            except OSError as exc:
                raise PatchError(f"variants.{i}.diff: cannot read {v.diff}: {exc.strerror}", where=where) from None
            diffs[v.diff] = tuple(parse_diff(raw, str(path)))
        touched = {d.path for d in diffs[v.diff]}
        if touched != set(v.files):
            missing, extra = sorted(touched - set(v.files)), sorted(set(v.files) - touched)
            raise PatchError(f"variants.{i}.files must list exactly the files {v.diff} touches"
                             + (f"; not listed: {', '.join(missing)}" if missing else "")
                             + (f"; not in the diff: {', '.join(extra)}" if extra else ""), where=where)
    return Patch(id=pid, folder=folder.resolve(), meta=meta, diffs=diffs)


def load_catalog(dirs: list[Path]) -> list[Patch]:
    """Every patch in the given catalogue folders (a folder that does not exist holds none), sorted by id.

    Folders whose names start with ``.`` or ``_`` are skipped; an id found twice is an error.
    """
    out: dict[str, Patch] = {}
    for d in dirs:
        if not d.is_dir():
            if d.exists():
                raise PatchError("a patch catalogue must be a folder", where=str(d))
            continue
        for entry in sorted(d.iterdir()):
            if not entry.is_dir() or entry.name.startswith((".", "_")):
                continue
            patch = load_patch(entry)
            if patch.id in out:
                raise PatchError(f"patch id {patch.id!r} is in two catalogues: {out[patch.id].folder} and "
                                 f"{patch.folder}", where=str(entry), hint="rename one of the folders")
            out[patch.id] = patch
    return [out[k] for k in sorted(out)]


def default_catalog(extra: list[Path] | None = None) -> list[Patch]:
    """The built-in catalogue plus ``extra`` folders."""
    return load_catalog([BUILTIN_CATALOG, *(extra or [])])


def spec_catalog(specfile: SpecFile) -> list[Patch]:
    """The patches a spec builds with: the built-in catalogue plus ``patches.catalogs``, less ``patches.skip``.

    SpecError (naming the spec and field) for a catalogue folder that does not exist or an unknown skipped id.
    """
    section = specfile.spec.patches
    dirs = [BUILTIN_CATALOG]
    for i, c in enumerate(section.catalogs):
        d = specfile.resolve(c)
        if not d.is_dir():
            raise SpecError(f"patches.catalogs[{i}]: {c!r} is not a folder ({d})", where=str(specfile.path),
                            hint="a catalogue folder holds one folder per patch, each with a patch.yaml")
        dirs.append(d)
    patches = load_catalog(dirs)
    ids = {p.id for p in patches}
    for i, pid in enumerate(section.skip):
        if pid not in ids:
            raise SpecError(f"patches.skip[{i}]: no patch {pid!r} in the catalogue (known: "
                            f"{', '.join(sorted(ids)) or 'none'})", where=str(specfile.path),
                            hint="python -m packager patches list shows the catalogue")
    return [p for p in patches if p.id not in section.skip]
