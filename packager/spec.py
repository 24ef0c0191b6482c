"""The user's spec (``models.yaml``): typed, frozen, validated with errors that name file, line and field."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from packaging.requirements import InvalidRequirement, Requirement
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from packager.errors import SpecError

_NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


def _quoted_version(v: object) -> object:
    """Versions are strings: YAML reads an unquoted 3.10 as the number 3.1."""
    if isinstance(v, (int, float)):
        raise ValueError(f"write it as a quoted string, e.g. \"{v}\" (YAML reads 3.10 as the number 3.1)")
    return v


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BundleInfo(_Frozen):
    name: Annotated[str, Field(pattern=_NAME_RE, max_length=64)]
    version: Annotated[str, Field(pattern=r"^[0-9A-Za-z][0-9A-Za-z.+_-]*$", max_length=64)]


class Target(_Frozen):
    os: Annotated[str, Field(pattern=r"^[a-z]+[0-9.]+$")] = "debian12"
    arch: Literal["x86_64", "aarch64"] = "x86_64"
    python: Annotated[str, Field(pattern=r"^3\.[0-9]{1,2}$")]
    manylinux: Annotated[str, Field(pattern=r"^2_[0-9]{2}$")] = "2_28"
    cuda: Annotated[str, Field(pattern=r"^[0-9]{2}\.[0-9]$")] | None = None

    _quoted = field_validator("python", "cuda", mode="before")(classmethod(lambda cls, v: _quoted_version(v)))

    @field_validator("python")
    @classmethod
    def _supported_python(cls, v: str) -> str:
        if int(v.split(".")[1]) < 9:
            raise ValueError(f"Python {v} is too old; targets must run Python >= 3.9")
        return v

    @property
    def python_platform(self) -> str:
        """The platform string uv understands, e.g. ``x86_64-manylinux_2_31``."""
        return f"{self.arch}-manylinux_{self.manylinux}"

    @property
    def cuda_label(self) -> str:
        """The local version label torch uses for this target: ``cu124`` or ``cpu``."""
        return "cu" + self.cuda.replace(".", "") if self.cuda else "cpu"


def _pep508(v: list[str]) -> list[str]:
    for i, line in enumerate(v):
        try:
            Requirement(line)
        except InvalidRequirement as exc:
            raise ValueError(f"requirements[{i}] {line!r} is not a PEP 508 requirement: {exc}") from None
    return v


class PythonSection(_Frozen):
    requirements: list[str] = Field(default_factory=list)
    #: folders of the operator's own Python projects (each with a pyproject.toml), relative to the spec:
    #: built into wheels at every build and resolved with their dependencies like the requirements
    local: list[str] = Field(default_factory=list)
    indexes: list[str] = Field(default_factory=list)
    find_links: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    index_url: str = "https://pypi.org/simple"

    @field_validator("requirements")
    @classmethod
    def _pep508(cls, v: list[str]) -> list[str]:
        return _pep508(v)

    @field_validator("local")
    @classmethod
    def _folders(cls, v: list[str]) -> list[str]:
        for i, entry in enumerate(v):
            if not entry.strip() or "://" in entry:
                raise ValueError(f"local[{i}] {entry!r} is not a folder path (a project with a pyproject.toml)")
        return v

    @field_validator("exclude")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        for name in v:
            if not re.match(_NAME_RE, name):
                raise ValueError(f"{name!r} is not a distribution name")
        return v


#: The oldest Python the offline control node may run: the packager and ansible-core 2.19 need 3.11.
CONTROLLER_MIN_PYTHON = (3, 11)


class ControllerSection(_Frozen):
    """What the offline control node needs to run the deploy; each platform field defaults to the target's."""

    python: Annotated[str, Field(pattern=r"^3\.[0-9]{1,2}$")] | None = None
    manylinux: Annotated[str, Field(pattern=r"^2_[0-9]{2}$")] | None = None
    arch: Literal["x86_64", "aarch64"] | None = None
    requirements: list[str] = Field(default_factory=list)  # PEP 508 lines on top of the defaults
    defaults: bool = True  # ansible-core and ansible; the packager and its runtime dependencies always come

    _quoted = field_validator("python", mode="before")(classmethod(lambda cls, v: _quoted_version(v)))

    @field_validator("python")
    @classmethod
    def _new_enough(cls, v: str | None) -> str | None:
        if v is not None and tuple(int(x) for x in v.split(".")) < CONTROLLER_MIN_PYTHON:
            raise ValueError(_too_old(v))
        return v

    @field_validator("requirements")
    @classmethod
    def _pep508(cls, v: list[str]) -> list[str]:
        return _pep508(v)


def _too_old(v: str) -> str:
    need = ".".join(map(str, CONTROLLER_MIN_PYTHON))
    return (f"the control node's Python {v} is too old: the packager and ansible-core need >= {need} "
            "(set controller.python to the Python of the offline control node)")


class _ModelBase(_Frozen):
    name: Annotated[str, Field(pattern=_NAME_RE, max_length=64)]
    include: list[str] = Field(default_factory=lambda: ["*"])
    exclude: list[str] = Field(default_factory=list)


class HubModel(_ModelBase):
    source: Literal["huggingface", "modelscope"]
    repo: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")]
    revision: Annotated[str, Field(min_length=1)] | None = None  # None: the hub's default branch

    @property
    def ref(self) -> str:
        """The revision to resolve: as given, else the hub's default branch (main on HF, master on ModelScope)."""
        if self.revision is not None:
            return self.revision
        return "main" if self.source == "huggingface" else "master"


class LocalModel(_ModelBase):
    source: Literal["local"]
    path: Path


ModelSpec = Annotated[HubModel | LocalModel, Field(discriminator="source")]


#: Base package sets shipped with the packager (``packager/data/<name>.status``): what a fresh target already has.
BUILTIN_BASES = ("debian12-minbase",)
#: Debian releases by ``target.os``: the suite the default apt source uses.
DEBIAN_SUITES = {"debian11": "bullseye", "debian12": "bookworm", "debian13": "trixie"}
DEBIAN_ARCHIVE = "http://deb.debian.org/debian"
#: apt syntax: a package name, optionally pinned to a version (``=1.2-3``) or a version glob (``=535.*``)
_APT_PACKAGE_RE = re.compile(r"^(?P<name>[a-z0-9][a-z0-9+.-]+)(?:=(?P<version>[A-Za-z0-9.+~:*-]+))?$")
_HEX64_RE = r"^[0-9a-f]{64}$"


def _apt_package(line: str) -> str:
    if _APT_PACKAGE_RE.match(line) is None:
        raise ValueError("not NAME or NAME=VERSION (apt syntax: a Debian package name, lower case, at least two "
                         "characters; a trailing * in VERSION globs it, e.g. nvidia-driver=535.*)")
    return line


def _source_uri(uri: str) -> str:
    if re.match(r"^(https?|file):/\S*$", uri) is None:
        raise ValueError("an apt source URI is http://, https:// or file:/ with no blanks")
    return uri.rstrip("/")


class AptSource(_Frozen):
    """One apt source: like a deb822 ``Types: deb`` entry. Its Release file must verify with ``keyring``."""

    uri: Annotated[str, AfterValidator(_source_uri)]
    suite: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")]
    components: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")]] = Field(
        default_factory=lambda: ["main"])
    keyring: Path | None = None  # None: Debian's archive keyring

    @field_validator("keyring")
    @classmethod
    def _no_blanks(cls, v: Path | None) -> Path | None:
        if v is not None and re.search(r"[\s\]]", str(v)):
            raise ValueError(f"keyring path {str(v)!r} may not contain blanks or ']' (apt's signed-by option)")
        return v

    @model_validator(mode="after")
    def _flat(self) -> AptSource:
        if self.suite.endswith("/") and self.components:
            raise ValueError(f"suite {self.suite!r} names a flat repository (it ends with '/'): "
                             "give it components: []")
        if not self.suite.endswith("/") and not self.components:
            raise ValueError("components is empty: name at least one (e.g. main)")
        return self


class LocalDeb(_Frozen):
    path: Path
    sha256: Annotated[str, Field(pattern=_HEX64_RE)]


class AptSection(_Frozen):
    sources: list[AptSource] = Field(default_factory=list)  # empty: Debian's archive for target.os, main
    packages: list[Annotated[str, AfterValidator(_apt_package)]] = Field(default_factory=list)  # NAME[=VERSION]
    #: what the target already has: a built-in snapshot name or a path (containing '/') to a dpkg status file;
    #: None: ``<target.os>-minbase``
    base: Annotated[str, Field(min_length=1)] | None = None
    debs: list[LocalDeb] = Field(default_factory=list)

    @field_validator("packages")
    @classmethod
    def _once(cls, v: list[str]) -> list[str]:
        seen: set[str] = set()
        for i, line in enumerate(v):
            name = line.split("=", 1)[0]
            if name in seen:
                raise ValueError(f"packages[{i}]: {name!r} is listed twice")
            seen.add(name)
        return v

    @field_validator("base")
    @classmethod
    def _known_base(cls, v: str | None) -> str | None:
        if v is not None and "/" not in v and v not in BUILTIN_BASES:
            raise ValueError(f"unknown built-in base {v!r}: one of {', '.join(BUILTIN_BASES)}, or a path to a "
                             "dpkg status file containing '/' (e.g. ./status)")
        return v


class SystemPackages(_Frozen):
    apt: AptSection | None = None


class PatchesSection(_Frozen):
    """Offline patches (docs/patches.md): the built-in catalogue plus ``catalogs``, less ``skip``."""

    catalogs: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)  # folders, relative to the spec
    allow_unchecked: bool = False  # build even if a resolved version is in no checked range of a patch
    skip: list[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.-]*$")]] = Field(default_factory=list)  # patch ids

    @field_validator("skip", "catalogs")
    @classmethod
    def _once(cls, v: list[str]) -> list[str]:
        for i, x in enumerate(v):
            if x in v[:i]:
                raise ValueError(f"[{i}] {x!r} is listed twice")
        return v


class Spec(_Frozen):
    bundle: BundleInfo
    target: Target
    python: PythonSection = Field(default_factory=PythonSection)
    models: list[ModelSpec] = Field(default_factory=list)
    controller: ControllerSection | None = None  # absent: the bundle carries no control node
    system_packages: SystemPackages | None = None  # absent: the bundle carries no .debs
    patches: PatchesSection = Field(default_factory=PatchesSection)  # absent: the built-in catalogue, nothing skipped

    @model_validator(mode="after")
    def _unique_model_names(self) -> Spec:
        seen: set[str] = set()
        for m in self.models:
            if m.name in seen:
                raise ValueError(f"model name {m.name!r} is used twice; names must be unique")
            seen.add(m.name)
        return self

    @model_validator(mode="after")
    def _controller_python(self) -> Spec:
        if self.controller is not None and self.controller.python is None:
            v = self.target.python
            if tuple(int(x) for x in v.split(".")) < CONTROLLER_MIN_PYTHON:
                raise ValueError("controller.python defaults to target.python: " + _too_old(v))
        return self

    @model_validator(mode="after")
    def _apt_defaults(self) -> Spec:
        apt = self.apt
        if apt is None:
            return self
        if not apt.sources and self.target.os not in DEBIAN_SUITES:
            raise ValueError(f"system_packages.apt.sources is empty and target.os {self.target.os!r} is not a "
                             f"Debian release ({', '.join(DEBIAN_SUITES)}): list the sources")
        if apt.base is None and f"{self.target.os}-minbase" not in BUILTIN_BASES:
            raise ValueError(f"system_packages.apt.base: there is no built-in base for {self.target.os!r} "
                             f"(built in: {', '.join(BUILTIN_BASES)}); give a path to the target's dpkg status file")
        return self

    @property
    def apt(self) -> AptSection | None:
        """The apt part of ``system_packages`` (None when absent)."""
        return self.system_packages.apt if self.system_packages is not None else None

    @property
    def apt_sources(self) -> list[AptSource]:
        """The apt sources to resolve against: as given, else Debian's archive for ``target.os`` (main)."""
        apt = self.apt
        if apt is not None and apt.sources:
            return list(apt.sources)
        return [AptSource(uri=DEBIAN_ARCHIVE, suite=DEBIAN_SUITES.get(self.target.os, "stable"))]

    @property
    def apt_base(self) -> str:
        """The base package set: as given, else the built-in ``<target.os>-minbase``."""
        apt = self.apt
        return apt.base if apt is not None and apt.base is not None else f"{self.target.os}-minbase"

    @property
    def controller_target(self) -> Target | None:
        """The platform the offline control node's wheels are resolved for (None without a controller)."""
        c = self.controller
        if c is None:
            return None
        t = self.target
        return Target(os=t.os, arch=c.arch or t.arch, python=c.python or t.python,
                      manylinux=c.manylinux or t.manylinux, cuda=None)

    def section_digest(self, section: str) -> str:
        """sha256 of one section's canonical JSON: tells the lock which parts of the spec changed."""
        data = self.model_dump(mode="json")
        if section == "python":
            payload: Any = {"target": data["target"], "python": data["python"]}
        elif section == "system_packages":
            payload = {"target": {"os": data["target"]["os"], "arch": data["target"]["arch"]},
                       "system_packages": data["system_packages"]}
        elif section == "controller":
            ct = self.controller_target
            payload = {"target": ct.model_dump(mode="json") if ct else None, "controller": data["controller"],
                       "index_url": data["python"]["index_url"]}
        else:
            payload = data[section]
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


class SpecFile(_Frozen):
    """A parsed spec together with where it came from (relative paths resolve against ``folder``)."""

    path: Path
    spec: Spec
    sha256: str

    @property
    def folder(self) -> Path:
        return self.path.parent

    def resolve(self, p: Path | str) -> Path:
        q = Path(p).expanduser()
        return q if q.is_absolute() else (self.folder / q).resolve()

    @property
    def lock_path(self) -> Path:
        return self.path.with_suffix(".lock")


def _line_index(node: yaml.Node, prefix: tuple[str | int, ...], out: dict[tuple[str | int, ...], int]) -> None:
    out[prefix] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            k = key.value
            out[(*prefix, k)] = key.start_mark.line + 1
            _line_index(value, (*prefix, k), out)
            # keep the key's line for the key itself (unknown-key errors point there)
            out[(*prefix, k)] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_index(item, (*prefix, i), out)


def _line_for(loc: tuple[str | int, ...], lines: dict[tuple[str | int, ...], int]) -> int | None:
    # pydantic puts discriminator tags into loc ("models", 0, "local", "path"): drop what is not in YAML
    path: tuple[str | int, ...] = ()
    best = lines.get(())
    for part in loc:
        cand = (*path, part)
        if cand in lines:
            path = cand
            best = lines[cand]
    return best


def _describe(err: dict[str, Any]) -> str:
    loc = ".".join(str(p) for p in err["loc"] if p not in ("huggingface", "modelscope", "local"))
    msg = str(err["msg"])
    if err["type"] == "extra_forbidden":
        msg = "unknown key (check the spelling; see README for the allowed keys)"
    elif err["type"] == "missing":
        msg = "required field is missing"
    elif err["type"] == "union_tag_invalid":
        msg = "source must be one of huggingface, modelscope, local"
    elif err["type"] == "literal_error":
        msg = f"must be {err.get('ctx', {}).get('expected', 'one of the allowed values')}"
    elif msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if "input" in err and err["type"] not in ("missing", "extra_forbidden") and not isinstance(
        err["input"], (dict, list)
    ):
        msg += f" (got {err['input']!r})"
    return f"{loc or '<top>'}: {msg}"


def parse_spec(text: str, source: str = "<spec>") -> Spec:
    """Parse and validate spec text. Raises SpecError naming file, line and field for every problem."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise SpecError(f"not valid YAML: {getattr(exc, 'problem', exc)}", where=where) from None
    if node is None or not isinstance(data, dict):
        raise SpecError(
            "the spec must be a mapping with at least 'bundle' and 'target'",
            where=source,
            hint="start from the demo models.yaml at the repository root",
        )
    lines: dict[tuple[str | int, ...], int] = {}
    _line_index(node, (), lines)
    try:
        return Spec.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            line = _line_for(tuple(err["loc"]), lines)
            problems.append(f"{source}:{line}: {_describe(dict(err))}" if line else f"{source}: {_describe(dict(err))}")
        raise SpecError(
            f"{len(problems)} problem(s) in the spec:\n  " + "\n  ".join(problems),
            hint="fix the fields named above; unknown keys are errors so typos never pass silently",
        ) from None


def load_spec(path: Path | str) -> SpecFile:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise SpecError("spec file not found", where=str(p), hint="pass --models PATH/TO/models.yaml") from None
    except OSError as exc:
        raise SpecError(f"cannot read spec: {exc.strerror}", where=str(p)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SpecError("spec is not UTF-8 text", where=str(p)) from None
    spec = parse_spec(text, str(p))
    return SpecFile(path=p.resolve(), spec=spec, sha256=hashlib.sha256(raw).hexdigest())
