"""Resolve the spec's Python requirements into pinned, hashed wheels for the target (not for this host).

Resolution runs ``uv pip compile`` for the target's Python version and manylinux platform, binary-only,
and reads its PEP 751 ``pylock.toml`` output (URL, size and sha256 per wheel). Only the indexes and
find-links folders the spec names are used: the machine's pip/uv configuration never leaks in.

After resolving, the torch family (torch, torchvision, torchaudio) is checked against ``target.cuda``:
a bundle whose torch was built for another CUDA than the target's fails at import time on the target,
so that is a lock error here, with the index to add.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import tempfile
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

import httpx
from packaging.markers import InvalidMarker, Marker
from packaging.requirements import Requirement
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from packager.errors import CudaMismatchError, LockError, NoWheelError
from packager.hashing import sha256_file
from packager.lock import PythonLock, WheelLock, tool_version
from packager.lock.local import LocalWheel, python_digest
from packager.spec import PythonSection, SpecFile, Target

__all__ = ["TORCH_FAMILY", "find_uv", "lock_python", "resolve_wheels", "target_platforms", "target_tags",
           "uv_env", "uv_version"]

#: Packages whose local version label names the CUDA (or CPU) build they were compiled for.
TORCH_FAMILY = ("torch", "torchvision", "torchaudio")

#: uv settings that only tune transport or the cache; every other UV_*/PIP_* variable is dropped.
_UV_ENV_KEEP = frozenset({
    "UV_CACHE_DIR", "UV_NO_CACHE", "UV_HTTP_TIMEOUT", "UV_HTTP_RETRIES", "UV_CONCURRENT_DOWNLOADS",
    "UV_NATIVE_TLS",
})
_UV_TIMEOUT_S = 1800
_PYTORCH_INDEX = "https://download.pytorch.org/whl"


def find_uv(uv: str | None = None) -> str:
    """Path of the uv executable: the one given, else the one shipped with the ``uv`` package, else PATH."""
    if uv is not None:
        found = shutil.which(uv)
        if found is None:
            raise LockError("uv not found", where=uv, hint="pass the path of a uv executable (uv >= 0.9)")
        return found
    try:
        path = str(importlib.import_module("uv").find_uv_bin())
        if Path(path).is_file():
            return path
    except (ImportError, FileNotFoundError):
        pass
    found = shutil.which("uv")
    if found is None:
        raise LockError("uv is needed to resolve Python requirements and was not found",
                        hint="pip install 'uv>=0.9' into the packager's environment, or put uv on PATH")
    return found


def uv_version(uv: str) -> str:
    """``uv X.Y.Z``: recorded in the lock as the resolver."""
    return tool_version(uv, "uv")


def uv_env() -> dict[str, str]:
    """This process's environment for uv, without the machine's uv/pip configuration."""
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith(("UV_", "PIP_")) and k not in _UV_ENV_KEEP)}
    env["UV_PYTHON_DOWNLOADS"] = "never"
    env["NO_COLOR"] = "1"
    return env


def target_platforms(target: Target) -> list[str]:
    """Platform tags the target accepts, most specific first (``manylinux_2_31_x86_64`` ... ``manylinux1``)."""
    glibc_minor = int(target.manylinux.split("_")[1])
    legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    plats: list[str] = []
    for minor in range(glibc_minor, 4, -1):
        plats.append(f"manylinux_2_{minor}_{target.arch}")
        if minor in legacy and (minor == 17 or target.arch == "x86_64"):
            plats.append(f"{legacy[minor]}_{target.arch}")
    return plats


def target_tags(target: Target) -> list[Tag]:
    """Wheel tags the target's CPython accepts, in pip's order of preference."""
    major, minor = (int(x) for x in target.python.split("."))
    plats = target_platforms(target)
    return [*cpython_tags((major, minor), platforms=plats),
            *compatible_tags((major, minor), interpreter=f"cp{major}{minor}", platforms=plats)]


def _marker_env(target: Target) -> dict[str, str]:
    return {
        "implementation_name": "cpython",
        "implementation_version": f"{target.python}.0",
        "os_name": "posix",
        "platform_machine": target.arch,
        "platform_python_implementation": "CPython",
        "platform_release": "",
        "platform_system": "Linux",
        "platform_version": "",
        "python_full_version": f"{target.python}.0",
        "python_version": target.python,
        "sys_platform": "linux",
    }


def lock_python(specfile: SpecFile, *, previous: PythonLock | None = None, uv: str | None = None,
                build_dir: Path | None = None, local: Sequence[LocalWheel] = ()) -> PythonLock:
    """Pin every wheel ``spec.python`` needs on the target. Returns ``previous`` untouched if still current.
    ``local`` are the wheels built from ``python.local``: resolved with the requirements, dependencies too."""
    spec = specfile.spec
    digest = python_digest(spec, list(local))
    if previous is not None and previous.spec_digest == digest:
        return previous
    py = spec.python
    if not py.requirements and not local:
        return PythonLock(spec_digest=digest, wheels=[], resolver="none")
    if local:
        py = py.model_copy(update={"requirements": [*py.requirements, *(w.requirement for w in local)]})
    uv_bin = find_uv(uv)
    find_links = [find_link(specfile, f) for f in py.find_links]
    wheels = resolve_wheels(uv_bin, spec.target, py, find_links, build_dir)
    if build_dir is not None:
        from packager.lock.sdist import BUILT_SCHEME

        built = {(build_dir / w.filename).as_uri() for w in wheels}
        wheels = [w.model_copy(update={"url": BUILT_SCHEME + w.filename}) if w.url in built else w for w in wheels]
    by_uri = {lw.path.resolve().as_uri(): lw for lw in local}
    wheels = [w.model_copy(update={"url": by_uri[w.url].url}) if w.url in by_uri else w for w in wheels]
    _check_torch(wheels, spec.target, py, find_links)
    return PythonLock(spec_digest=digest, wheels=wheels, resolver=uv_version(uv_bin))


def resolve_wheels(uv: str, target: Target, py: PythonSection, find_links: list[str],
                   build_dir: Path | None = None) -> list[WheelLock]:
    """Pin ``py.requirements`` to one wheel each for ``target`` (its Python and platform, not this host's),
    sorted by name. Only ``py``'s indexes and ``find_links`` are asked. Raises LockError / NoWheelError."""
    packages = _resolve(uv, target, py, find_links, build_dir)
    return sorted(_wheels_from_pylock(packages, target), key=lambda w: w.name)


def find_link(specfile: SpecFile, entry: str) -> str:
    if re.match(r"^[a-z][a-z0-9+.-]*://", entry, re.IGNORECASE) and not entry.startswith("file://"):
        return entry
    path = specfile.resolve(url2pathname(urlparse(entry).path) if entry.startswith("file://") else entry)
    if not path.is_dir():
        raise LockError("find_links folder does not exist", where=str(path),
                        hint="python.find_links entries are folders of wheels (relative to the spec) or URLs")
    return str(path)


class _NoWheels(Exception):
    """uv found requirements without a usable wheel (it names the first ones it hits)."""

    def __init__(self, names: list[str], uv_message: str) -> None:
        super().__init__(", ".join(names))
        self.names = names
        self.uv_message = uv_message


_MAX_NO_WHEEL_ROUNDS = 8


def _resolve(uv: str, target: Target, py: PythonSection, find_links: list[str],
             build_dir: Path | None = None, *, build_rounds: int = 6) -> list[dict[str, Any]]:
    """Run uv; when it stops at a package without wheels, set that one aside and go on, so a single
    NoWheelError names every such package instead of one per attempt. With ``build_dir``, packages that
    only publish an sdist are built there when pure Python, and the set is resolved again with them."""
    missing: list[str] = []
    messages: list[str] = []
    with tempfile.TemporaryDirectory(prefix="airlock-lock-") as tmp:
        for _ in range(_MAX_NO_WHEEL_ROUNDS):
            try:
                packages = _run_uv(uv, target, py, find_links, Path(tmp),
                                   exclude=[*py.exclude, *missing])
            except _NoWheels as exc:
                new = [n for n in exc.names if n not in missing]
                messages.append(exc.uv_message)
                if not new:
                    break
                missing += new
                continue
            except LockError:
                if missing:
                    break
                raise
            if not missing:
                return packages
            break
    compiled: dict[str, str] = {}
    if build_dir is not None and missing and build_rounds > 0:
        from packager.lock.sdist import build_pure_wheels

        builds = build_pure_wheels(uv, env=uv_env(), target=target, py=py, find_links=find_links,
                                   exclude=list(py.exclude), names=missing, out=build_dir)
        compiled = builds.compiled
        if builds.built and not builds.compiled and not builds.failed:
            # built wheels can reveal further sdist-only dependencies: go on, a bounded number of rounds
            links = find_links if str(build_dir) in find_links else [*find_links, str(build_dir)]
            return _resolve(uv, target, py, links, build_dir, build_rounds=build_rounds - 1)
        messages += [f"{n}: {why}" for n, why in builds.failed.items()]
    raise _no_wheel_error(missing, messages, target, py, find_links, compiled=compiled)


def _run_uv(uv: str, target: Target, py: PythonSection, find_links: list[str], tmp: Path, *,
            exclude: list[str]) -> list[dict[str, Any]]:
    req = tmp / "requirements.in"
    req.write_text("\n".join(py.requirements) + "\n", encoding="utf-8")
    out = tmp / "pylock.toml"
    out.unlink(missing_ok=True)
    cmd = [
        uv, "pip", "compile", "--no-config", "--quiet", "--no-header", "--no-annotate",
        "--python-version", target.python, "--python-platform", target.python_platform,
        "--only-binary", ":all:", "--generate-hashes", "--index-strategy", "first-index",
        "--index-url", py.index_url,
    ]
    for index in py.indexes:
        cmd += ["--extra-index-url", index]
    for link in find_links:
        cmd += ["--find-links", link]
    if exclude:
        excludes = tmp / "excludes.txt"
        excludes.write_text("\n".join(exclude) + "\n", encoding="utf-8")
        cmd += ["--excludes", str(excludes)]
    cmd += ["-o", str(out), str(req)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=uv_env(), cwd=tmp,
                              timeout=_UV_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise LockError(f"uv did not finish resolving within {_UV_TIMEOUT_S} s",
                        hint="check that the indexes answer; UV_HTTP_TIMEOUT tunes uv's timeout") from None
    except OSError as exc:
        raise LockError(f"cannot run uv: {exc.strerror}", where=uv) from None
    if proc.returncode != 0:
        raise _uv_error(proc.stderr, py, find_links)
    try:
        data = tomllib.loads(out.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise LockError(f"uv wrote no readable pylock.toml: {exc}", where=uv) from None
    packages: list[dict[str, Any]] = data.get("packages", [])
    return packages


# --- uv's error output -> our errors -------------------------------------------------------------------

_NO_WHEEL_RES = (
    re.compile(r"Wheels are required for `([^`]+)`"),
    re.compile(r"(?:all versions of |Because |and |depends on )`?([A-Za-z0-9][A-Za-z0-9._-]*)`?"
               r"(?:[<>=!~]=?[^ ]*)? (?:has|have) no (?:usable wheels|wheels with a matching)"),
)


def _uv_message(stderr: str) -> str:
    lines = [ln.rstrip() for ln in stderr.splitlines()
             if ln.strip() and not ln.startswith("warning: The requested Python version")]
    return "\n".join(lines)


def _uv_error(stderr: str, py: PythonSection, find_links: list[str]) -> LockError | _NoWheels:
    msg = _uv_message(stderr)
    short = "\n    ".join(msg.splitlines()[:20])
    m = re.search(r"Failed to fetch: `?(\S+?)`?$", msg, re.MULTILINE) or re.search(
        r"error sending request for url \((\S+)\)", msg)
    if m:
        url = m.group(1)
        index = next((i for i in (*py.indexes, py.index_url) if url.startswith(i.rstrip("/"))), None)
        return LockError(
            f"cannot reach the package index {index or url}:\n    {short}",
            where=url,
            hint="check the URL in python.index_url / python.indexes and that this machine can reach it",
        )
    names: list[str] = []
    for rx in _NO_WHEEL_RES:
        for name in rx.findall(msg):
            n = canonicalize_name(name)
            if n not in names:
                names.append(n)
    if names:
        return _NoWheels(names, short)
    m = re.search(r"`?([A-Za-z0-9][A-Za-z0-9._-]*)`? was not found in the (?:package registry|provided package)",
                  msg)
    if m:
        where = ", ".join([*py.indexes, py.index_url, *find_links])
        return LockError(f"package {m.group(1)!r} was not found on {where}", where="python.requirements",
                         hint="check the name, or add the index or find_links folder that provides it")
    m = re.search(r"Failed to read `--find-links` (?:directory|URL): (\S+)", msg)
    if m:
        return LockError(f"cannot read a find_links source:\n    {short}", where=m.group(1))
    return LockError(f"uv could not resolve the requirements for the target:\n    {short}",
                     where="python.requirements")


def _no_wheel_error(names: list[str], messages: list[str], target: Target, py: PythonSection,
                    find_links: list[str], *, compiled: Mapping[str, str] | None = None) -> NoWheelError:
    compiled = compiled or {}
    reasons = [f"{n}: " + (f"only an sdist with compiled code (it built for {compiled[n]} here); a wheel must be "
                           f"built with the target's Python and glibc" if n in compiled
                           else _wheel_report(n, py, find_links)) for n in names]
    tag = f"cp{target.python.replace('.', '')} / manylinux_{target.manylinux}_{target.arch}"
    said = "\n    ".join(messages)
    return NoWheelError(
        f"no wheel for the target ({tag}) for: {', '.join(names)}\n  " + "\n  ".join(reasons)
        + f"\n  uv says:\n    {said}",
        where="python.requirements",
        hint=("a pure-Python sdist can be built into a wheel (`pip wheel --no-deps --no-binary :all: "
              "NAME==VERSION -w DIR`) and DIR added to python.find_links; a compiled package must be built "
              f"with the target's Python {target.python} and glibc 2.{target.manylinux.split('_')[1]} "
              "(e.g. in a matching manylinux container); or add it to python.exclude if the target "
              "does not need it"),
    )


def _published_files(name: str, py: PythonSection, find_links: list[str]) -> list[str]:
    """File names the find_links folders and indexes publish for ``name`` (best effort, short timeouts)."""
    files = [p.name for link in find_links if "://" not in link for p in Path(link).iterdir()]
    accept = {"Accept": "application/vnd.pypi.simple.v1+json, text/html;q=0.1"}
    with httpx.Client(timeout=10, follow_redirects=True) as client:
        for index in (*py.indexes, py.index_url):
            try:
                r = client.get(f"{index.rstrip('/')}/{name}/", headers=accept)
            except httpx.HTTPError:
                continue
            if r.status_code != 200:
                continue
            if r.headers.get("content-type", "").startswith("application/vnd.pypi.simple.v1+json"):
                files += [str(f["filename"]) for f in r.json().get("files", [])]
            else:
                hrefs = re.findall(r'href="([^"]+)"', r.text)
                files += [unquote(h.split("#")[0].rsplit("/", 1)[-1]) for h in hrefs]
    return files


def _wheel_report(name: str, py: PythonSection, find_links: list[str]) -> str:
    """What is published for ``name``: only sdists, or wheels for which tags."""
    spec = next((Requirement(r).specifier for r in py.requirements
                 if canonicalize_name(Requirement(r).name) == name), None)
    by_version: dict[Version, set[Tag]] = {}
    sdists = 0
    for f in _published_files(name, py, find_links):
        if f.endswith(".whl"):
            try:
                wname, version, _, tags = parse_wheel_filename(f)
            except (InvalidWheelFilename, InvalidVersion):
                continue
            if wname == name and (spec is None or spec.contains(version, prereleases=True)):
                by_version.setdefault(version, set()).update(tags)
        elif f.endswith((".tar.gz", ".zip")) and canonicalize_name(f.split("-")[0]) == name:
            sdists += 1
    if not by_version:
        return "only source distributions (sdists) are published" if sdists else "no wheels found"
    newest = max(by_version)
    found = by_version[newest]
    pythons = sorted({t.interpreter for t in found}, key=lambda x: (len(x), x))
    plats = sorted({t.platform for t in found})
    return (f"wheels of {newest} exist only for Python tags {_few(pythons)} "
            f"on platforms {_few(plats)}")


def _few(items: list[str], n: int = 8) -> str:
    return ", ".join(items[:n]) + (f" (+{len(items) - n} more)" if len(items) > n else "")


# --- pylock.toml -> WheelLock -----------------------------------------------------------------------


def _wheels_from_pylock(packages: Iterable[Mapping[str, Any]], target: Target) -> list[WheelLock]:
    tags = {t: i for i, t in enumerate(target_tags(target))}
    env = _marker_env(target)
    out: list[WheelLock] = []
    missing: list[str] = []
    for pkg in packages:
        name = canonicalize_name(str(pkg["name"]))
        marker = pkg.get("marker")
        if marker:
            try:
                if not Marker(str(marker)).evaluate(env):
                    continue
            except InvalidMarker:
                pass
        best: tuple[int, Mapping[str, Any], str] | None = None
        candidates = list(pkg.get("wheels", []))
        if not candidates and "archive" in pkg:
            candidates = [pkg["archive"]]
        for w in candidates:
            url = _wheel_url(w)
            filename = unquote(urlparse(url).path.rsplit("/", 1)[-1])
            try:
                wtags = parse_wheel_filename(filename)[3]
            except (InvalidWheelFilename, InvalidVersion):
                continue
            rank = min((tags[t] for t in wtags if t in tags), default=None)
            if rank is not None and (best is None or rank < best[0]):
                best = (rank, w, url)
        if best is None:
            missing.append(f"{name} {pkg.get('version', '')}".strip())
            continue
        _, w, url = best
        out.append(_wheel_lock(name, str(pkg["version"]), w, url))
    if missing:
        raise NoWheelError(
            f"the resolution holds no wheel for the target ({target.python_platform}, cp"
            f"{target.python.replace('.', '')}) for: {', '.join(missing)}",
            where="python.requirements",
            hint="provide a wheel through python.find_links or exclude the package",
        )
    return out


def _wheel_url(w: Mapping[str, Any]) -> str:
    if "url" in w:
        return str(w["url"])
    if "path" in w:
        return Path(str(w["path"])).resolve().as_uri()
    raise LockError(f"uv's pylock.toml has a wheel without url or path: {w!r}")


def _wheel_lock(name: str, version: str, w: Mapping[str, Any], url: str) -> WheelLock:
    filename = unquote(urlparse(url).path.rsplit("/", 1)[-1])
    sha = (w.get("hashes") or {}).get("sha256")
    size = w.get("size")
    if url.startswith("file:"):
        path = Path(url2pathname(urlparse(url).path))
        try:
            if sha is None:
                sha, size = sha256_file(path)
            else:
                size = path.stat().st_size
        except OSError as exc:
            raise LockError(f"cannot read wheel: {exc.strerror}", where=str(path)) from None
    if sha is None:
        raise LockError(f"the index publishes no sha256 for {filename}", where=url,
                        hint="use an index that serves hashes (PEP 503 #sha256= fragments)")
    return WheelLock(name=name, version=version, filename=filename, url=url, sha256=str(sha),
                     size=int(size) if size is not None else None)


# --- torch / CUDA -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Build:
    label: str | None  # local version label: cu124, cpu, rocm6.2, or None
    cuda: str | None  # "12.4" for a CUDA build, None for CPU / unknown


def _cuda_of_label(label: str) -> str | None:
    m = re.fullmatch(r"cu(\d+)(\d)", label)
    return f"{m.group(1)}.{m.group(2)}" if m else None


def _cuda_from_runtime(wheels: Iterable[WheelLock]) -> str | None:
    for w in wheels:
        if re.fullmatch(r"nvidia-cuda-runtime(-cu\d+)?", w.name):
            try:
                rel = Version(w.version).release
            except InvalidVersion:
                continue
            if len(rel) >= 2:
                return f"{rel[0]}.{rel[1]}"
    return None


def _build_of(w: WheelLock, runtime_cuda: str | None) -> _Build:
    try:
        label = Version(w.version).local
    except InvalidVersion:
        label = None
    if label:
        return _Build(label, _cuda_of_label(label))
    return _Build(None, runtime_cuda)


def _describe(b: _Build) -> str:
    if b.cuda:
        return f"the CUDA {b.cuda} build"
    if b.label == "cpu" or b.label is None:
        return "the CPU build"
    return f"the {b.label} build"


def _origin(url: str, py: PythonSection, find_links: list[str]) -> str:
    if url.startswith("file:"):
        folder = str(Path(url2pathname(urlparse(url).path)).parent)
        return f"find_links {folder}"
    u = urlparse(url)
    for index in (*py.indexes, py.index_url):
        i = urlparse(index)
        if u.netloc == i.netloc or (u.netloc == "files.pythonhosted.org" and i.netloc == "pypi.org"):
            return index
    for link in find_links:
        if urlparse(link).netloc == u.netloc:
            return link
    return f"{u.scheme}://{u.netloc}"


def _check_torch(wheels: list[WheelLock], target: Target, py: PythonSection, find_links: list[str]) -> None:
    """Raise CudaMismatchError when a torch-family wheel was built for another CUDA (or CPU) than the target."""
    family = [w for w in wheels if w.name in TORCH_FAMILY]
    if not family:
        return
    runtime_cuda = _cuda_from_runtime(wheels)
    want = target.cuda_label
    problems: list[str] = []
    for w in sorted(family, key=lambda w: TORCH_FAMILY.index(w.name)):
        b = _build_of(w, runtime_cuda)
        if b.label == want:
            continue
        if b.label is None and target.cuda is not None and b.cuda == target.cuda:
            continue  # an unlabelled build whose CUDA runtime dependency is the target's
        if b.label is None and target.cuda is None and b.cuda is None:
            continue  # unlabelled with no CUDA runtime dependency: a CPU build (aarch64 wheels carry no label)
        if b.label:
            found = f"{_describe(b)} (+{b.label})"
        elif b.cuda:
            found = f"{_describe(b)} (no local label, as +cu{b.cuda.replace('.', '')}; from its nvidia CUDA runtime)"
        else:
            found = "a build without local label and of unknown CUDA"
        problems.append(f"{w.name} {w.version} resolved from {_origin(w.url, py, find_links)} is {found}")
    if not problems:
        return
    if target.cuda:
        wanted = f"target.cuda is {target.cuda}"
        hint = (f"add {_PYTORCH_INDEX}/{want} to python.indexes (or a find_links folder holding the "
                f"+{want} wheels) so torch resolves to the +{want} build")
    else:
        wanted = "target.cuda is null (CPU)"
        hint = (f"add {_PYTORCH_INDEX}/cpu to python.indexes, or a find_links folder holding the +cpu wheels; "
                "or set target.cuda to the CUDA version of the target")
    raise CudaMismatchError("; ".join(problems) + f"; {wanted}", where="python.requirements", hint=hint)

