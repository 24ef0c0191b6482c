"""Resolve the spec's system packages into pinned, hashed .debs for the target (not for this host).

apt itself resolves, in a private root that shares nothing with this machine's apt: its own config file
(``APT_CONFIG``; the machine's ``apt.conf.d``, sources, preferences and trusted keys are never read), its
own lists and cache under the airlock cache, the target's architecture (``target.arch``: amd64 / arm64),
and as dpkg status file the *base snapshot*: the package set a fresh target already has. So:

1. ``apt-get update`` fetches each source's InRelease and verifies it with the keyring the spec names
   (``signed-by``; Debian's archive keyring by default), then the Packages lists it vouches for;
2. ``apt-get install --print-uris --no-install-recommends --no-remove`` prints the closure the base lacks:
   every .deb to download with its URL and size;
3. ``apt-cache show NAME=VERSION`` gives each one's Packages stanza from the verified lists: its SHA256
   (``--print-uris`` prints only the MD5 of Debian's archive), cross-checked against what was printed,
   and the fields the bundle's own index is generated from.

The debs the spec lists by path (``debs: [{path, sha256}]``) are checked against their sha256, read with
``dpkg-deb``, and handed to the same ``apt-get install``, so their dependencies are resolved too.

The built-in base ``debian12-minbase`` (``packager/data/debian12-minbase.status``) is the dpkg status of
the fleet's test image (Debian 12 minbase + systemd + python3), trimmed to the fields apt reads.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from packager.cache import Cache
from packager.errors import LockError
from packager.hashing import sha256_file
from packager.lock import AptLock, DebLock, tool_version
from packager.spec import AptSection, AptSource, SpecFile, Target

__all__ = ["DATA", "DEFAULT_KEYRING", "INDEX_FIELDS", "apt_arch", "base_snapshot", "find_apt", "lock_apt",
           "parse_deb822"]

#: Debian's archive keyring (package debian-archive-keyring): the default ``keyring`` of a source.
DEFAULT_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
#: Built-in base snapshots: ``<name>.status``.
DATA = Path(__file__).resolve().parents[1] / "data"
#: The Packages stanza fields the lock keeps and the bundle's index carries, in Debian's order. Recommends and
#: Suggests stay: apt tells two builds of one version apart by a hash over Installed-Size, the relations and
#: these, so an index without them would not match what dpkg records once installed. The closure holds no
#: recommended package (resolved with --no-install-recommends): a host's apt skips those it cannot find.
INDEX_FIELDS = ("Package", "Source", "Version", "Architecture", "Multi-Arch", "Essential", "Protected", "Priority",
                "Section", "Installed-Size", "Pre-Depends", "Depends", "Recommends", "Suggests", "Enhances",
                "Provides", "Conflicts", "Breaks", "Replaces", "Description")
_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}
_TIMEOUT_S = 900
_URI_LINE = re.compile(r"^'(?P<url>[^']+)' (?P<name>\S+) (?P<size>\d+) ?(?P<hash>\S*)$")
_WHERE = "system_packages.apt"


def apt_arch(target: Target) -> str:
    """Debian's name for the target's architecture: amd64 or arm64."""
    return _ARCH[target.arch]


def find_apt() -> tuple[str, str]:
    """Paths of apt-get and apt-cache; LockError when apt is not installed."""
    get, cache = shutil.which("apt-get"), shutil.which("apt-cache")
    if get is None or cache is None:
        raise LockError("apt-get is needed to resolve system_packages and was not found", where=_WHERE,
                        hint="build on a Debian/Ubuntu machine (apt-get install apt), or drop system_packages")
    return get, cache


def apt_version(apt_get: str) -> str:
    return tool_version(apt_get, "apt")


def parse_deb822(text: str) -> list[dict[str, str]]:
    """Stanzas of a deb822 file (Packages, dpkg status, control): field -> value, continuation lines kept."""
    out: list[dict[str, str]] = []
    cur: dict[str, str] = {}
    key = ""
    for line in text.splitlines():
        if not line.strip():
            if cur:
                out.append(cur)
            cur, key = {}, ""
        elif line[0] in " \t":
            if key:
                cur[key] += "\n" + line
        elif not line.startswith("#"):
            key, _, value = line.partition(":")
            cur[key] = value.strip()
    if cur:
        out.append(cur)
    return out


def base_snapshot(specfile: SpecFile) -> tuple[str, bytes]:
    """The base package set: (name or path, dpkg status bytes)."""
    name = specfile.spec.apt_base
    path = specfile.resolve(name) if "/" in name else DATA / f"{name}.status"
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise LockError(f"cannot read the base package set: {exc.strerror}", where=str(path),
                        hint="system_packages.apt.base is a built-in name or a dpkg status file "
                             "(copy /var/lib/dpkg/status from a fresh target)") from None
    stanzas = parse_deb822(raw.decode("utf-8", "replace"))
    if not stanzas or any("Package" not in s or "Status" not in s for s in stanzas):
        raise LockError("the base package set is not a dpkg status file (stanzas with Package and Status)",
                        where=str(path))
    return (str(path) if "/" in name else name), raw


def _keyring(specfile: SpecFile, i: int, source: AptSource) -> Path:
    path = specfile.resolve(source.keyring) if source.keyring is not None else DEFAULT_KEYRING
    if not path.is_file():
        hint = ("install debian-archive-keyring, or give the source a keyring" if source.keyring is None
                else "keyring is the path of the .gpg or .asc file that signs this source (relative to the spec)")
        raise LockError(f"keyring of {source.uri} {source.suite} not found: {path}",
                        where=f"{_WHERE}.sources[{i}].keyring", hint=hint)
    if path.suffix not in (".gpg", ".asc"):
        raise LockError(f"keyring {path} must end in .gpg (binary) or .asc (armored): apt tells them by name",
                        where=f"{_WHERE}.sources[{i}].keyring")
    return path


@dataclass(frozen=True)
class _LocalDeb:
    path: Path
    sha256: str
    size: int
    fields: dict[str, str]


def _local_deb(specfile: SpecFile, i: int, path: Path, sha256: str, arch: str) -> _LocalDeb:
    where = f"{_WHERE}.debs[{i}]"
    p = specfile.resolve(path)
    try:
        digest, size = sha256_file(p)
    except OSError as exc:
        raise LockError(f"cannot read the .deb: {exc.strerror}", where=f"{where}: {p}") from None
    if digest != sha256:
        raise LockError(f"{p.name} has sha256 {digest}, the spec says {sha256}", where=f"{where}: {p}",
                        hint="the file changed, or the spec names the wrong digest")
    dpkg_deb = shutil.which("dpkg-deb")
    if dpkg_deb is None:
        raise LockError("dpkg-deb is needed to read the spec's .debs and was not found", where=where)
    proc = subprocess.run([dpkg_deb, "--field", str(p)], capture_output=True, text=True, timeout=120, check=False)
    stanzas = parse_deb822(proc.stdout) if proc.returncode == 0 else []
    if not stanzas or not {"Package", "Version", "Architecture"} <= stanzas[0].keys():
        raise LockError(f"not a Debian package: {proc.stderr.strip() or 'no control fields'}", where=f"{where}: {p}")
    fields = stanzas[0]
    if fields["Architecture"] not in (arch, "all"):
        raise LockError(f"{p.name} is for {fields['Architecture']}, the target is {arch}", where=f"{where}: {p}")
    return _LocalDeb(path=p, sha256=digest, size=size, fields=fields)


def _index_fields(stanza: dict[str, str]) -> dict[str, str]:
    out = {k: stanza[k] for k in INDEX_FIELDS if k in stanza}
    if "Description" in out:
        out["Description"] = out["Description"].split("\n", 1)[0]
    return {k: " ".join(v.split()) if k != "Description" else v for k, v in out.items()}


def _digest(specfile: SpecFile, base_raw: bytes, keyrings: Sequence[Path]) -> str:
    payload = {
        "spec": specfile.spec.section_digest("system_packages"),
        "base": hashlib.sha256(base_raw).hexdigest(),
        "keyrings": [sha256_file(k)[0] for k in keyrings],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def lock_apt(specfile: SpecFile, cache: Cache, *, previous: AptLock | None = None) -> AptLock | None:
    """Pin every .deb ``spec.system_packages.apt`` needs on the target beyond its base package set.
    Returns ``previous`` untouched if still current, None when the spec asks for no system packages."""
    spec = specfile.spec
    section = spec.apt
    if section is None or (not section.packages and not section.debs):
        return None
    sources = spec.apt_sources
    keyrings = [_keyring(specfile, i, s) for i, s in enumerate(sources)]
    base_name, base_raw = base_snapshot(specfile)
    digest = _digest(specfile, base_raw, keyrings)
    if previous is not None and previous.spec_digest == digest:
        return previous
    arch = apt_arch(spec.target)
    apt_get, apt_cache = find_apt()
    local = [_local_deb(specfile, i, d.path, d.sha256, arch) for i, d in enumerate(section.debs)]
    root = _AptRoot(cache.root / "apt", sources, keyrings, arch, apt_get=apt_get, apt_cache=apt_cache)
    with root.locked():
        root.prepare(base_raw)
        root.update()
        printed = root.print_uris(section, [d.path for d in local])
        debs = _debs(root, printed, local)
    return AptLock(spec_digest=digest, arch=arch, base=base_name, base_sha256=hashlib.sha256(base_raw).hexdigest(),
                   debs=debs, resolver=apt_version(apt_get))


@dataclass(frozen=True)
class _Printed:
    url: str
    package: str
    version: str
    arch: str
    size: int
    hash: str  # "MD5Sum:..." / "SHA256:..." as apt printed it (may be empty)


def _debs(root: _AptRoot, printed: list[_Printed], local: list[_LocalDeb]) -> list[DebLock]:
    out: list[DebLock] = []
    mine = {(d.fields["Package"], d.fields["Version"]) for d in local}
    paths = {str(d.path) for d in local}
    # the spec's own debs come back as file: URIs of their paths (or, when a source has the very same version,
    # as that source's URI): they are taken from the spec, not downloaded
    remote = [p for p in printed
              if not (p.url.startswith("file:") and unquote(urlparse(p.url).path) in paths)
              and (p.package, p.version) not in mine]
    records = root.show([f"{p.package}:{root.arch}={p.version}" for p in remote]) if remote else []
    for p in remote:
        rec = _matching_record(p, records)
        out.append(DebLock(package=p.package, version=p.version, arch=rec["Architecture"],
                           filename=rec["Filename"].rsplit("/", 1)[-1], url=p.url, sha256=rec["SHA256"],
                           size=int(rec["Size"]), fields=_index_fields(rec)))
    for d in local:
        f = d.fields
        out.append(DebLock(package=f["Package"], version=f["Version"], arch=f["Architecture"], filename=d.path.name,
                           url=d.path.as_uri(), sha256=d.sha256, size=d.size, fields=_index_fields(f)))
    seen: dict[str, DebLock] = {}
    for deb in out:
        other = seen.setdefault(deb.filename, deb)
        if other is not deb and other.sha256 != deb.sha256:
            raise LockError(f"two different files are both named {deb.filename}: {other.url} and {deb.url}",
                            where=_WHERE, hint="rename the spec's .deb, or drop one of them")
    return sorted({d.filename: d for d in out}.values(), key=lambda d: (d.package, d.version, d.arch))


def _matching_record(p: _Printed, records: list[dict[str, str]]) -> dict[str, str]:
    """The Packages stanza apt planned to download: same name, version, file, size and printed hash."""
    algo, _, value = p.hash.partition(":")
    field = {"md5sum": "MD5sum", "sha1": "SHA1", "sha256": "SHA256", "sha512": "SHA512"}.get(algo.lower())
    for rec in records:
        if (rec.get("Package") != p.package or rec.get("Version") != p.version
                or not unquote(p.url).endswith("/" + rec.get("Filename", "").removeprefix("./"))
                or rec.get("Size") != str(p.size)):
            continue
        if field is not None and rec.get(field, "").lower() != value.lower():
            continue
        if not re.fullmatch(r"[0-9a-f]{64}", rec.get("SHA256", "")):
            raise LockError(f"the apt source publishes no SHA256 for {p.package} {p.version}", where=p.url,
                            hint="use a source whose Packages lists carry SHA256 (every Debian mirror does)")
        return rec
    raise LockError(f"apt planned {p.url} ({p.size} bytes, {p.hash or 'no hash'}) but its lists hold no matching "
                    f"stanza for {p.package} {p.version}", where=_WHERE, hint="rerun; the mirror may be mid-update")


class _AptRoot:
    """apt-get and apt-cache in a private root under the cache, kept between runs (``update`` then only
    fetches what changed): one root per (sources, keyrings, architecture)."""

    def __init__(self, parent: Path, sources: Sequence[AptSource], keyrings: Sequence[Path], arch: str, *,
                 apt_get: str, apt_cache: str) -> None:
        self.apt_get, self.apt_cache, self.arch = apt_get, apt_cache, arch
        self.sources = list(zip(sources, keyrings, strict=True))
        lines = [self._line(s, k) for s, k in self.sources]
        key = hashlib.sha256(json.dumps([arch, lines, [sha256_file(k)[0] for k in keyrings]]).encode()).hexdigest()
        self.dir = parent / key[:24]
        self.lines = lines

    @staticmethod
    def _line(source: AptSource, keyring: Path) -> str:
        return " ".join(["deb", f"[signed-by={keyring}]", source.uri, source.suite, *source.components])

    @contextmanager
    def locked(self) -> Iterator[None]:
        """One resolution at a time per root (two builds sharing a cache must not update the same lists)."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            f = (self.dir / "lock").open("a")
        except OSError as exc:
            raise LockError(f"cannot create apt's private folder: {exc.strerror}", where=str(self.dir)) from None
        try:
            fcntl.flock(f, fcntl.LOCK_EX)
            yield
        finally:
            f.close()

    def prepare(self, base_status: bytes) -> None:
        d = self.dir
        for sub in ("etc/apt.conf.d", "etc/preferences.d", "etc/trusted.gpg.d", "lists/partial",
                    "cache/archives/partial", "state", "log"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        # the base as the target sees it: a snapshot taken on amd64 describes an arm64 target as well
        status = re.sub(rb"^Architecture: (?!all\s*$)\S+[ \t]*$", b"Architecture: " + self.arch.encode(),
                        base_status, flags=re.MULTILINE)
        (d / "state" / "status").write_bytes(status)
        (d / "sources.list").write_text("\n".join(self.lines) + "\n", encoding="utf-8")
        conf = {
            "Dir": f"{d}/",
            "Dir::Etc::main": "/dev/null",
            "Dir::Etc::parts": f"{d}/etc/apt.conf.d",
            "Dir::Etc::sourcelist": f"{d}/sources.list",
            "Dir::Etc::sourceparts": "-",
            "Dir::Etc::preferences": "/dev/null",
            "Dir::Etc::preferencesparts": f"{d}/etc/preferences.d",
            "Dir::Etc::trusted": f"{d}/etc/trusted.gpg",
            "Dir::Etc::trustedparts": f"{d}/etc/trusted.gpg.d",
            "Dir::State": f"{d}/state/",
            "Dir::State::Lists": f"{d}/lists/",
            "Dir::State::status": f"{d}/state/status",
            "Dir::Cache": f"{d}/cache/",
            "Dir::Log": f"{d}/log/",
            "APT::Architecture": self.arch,
            "Acquire::Languages": "none",
            "Acquire::GzipIndexes": "false",
            "Acquire::PDiffs": "false",
            "APT::Install-Recommends": "false",
            "APT::Install-Suggests": "false",
        }
        text = "".join(f'{k} "{v}";\n' for k, v in conf.items()) + f'APT::Architectures {{ "{self.arch}"; }};\n'
        (d / "apt.conf").write_text(text, encoding="utf-8")

    def _run(self, args: list[str], what: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("APT_")}
        env.update(APT_CONFIG=str(self.dir / "apt.conf"), LC_ALL="C", LANG="C", DEBIAN_FRONTEND="noninteractive")
        try:
            return subprocess.run(args, capture_output=True, text=True, env=env, timeout=_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise LockError(f"{what} did not finish within {_TIMEOUT_S} s", where=_WHERE,
                            hint="check that the apt sources answer") from None
        except OSError as exc:
            raise LockError(f"cannot run {what}: {exc.strerror}", where=args[0]) from None

    def _source_of(self, message: str) -> tuple[int, AptSource, Path] | None:
        for i, (s, k) in enumerate(self.sources):
            if f"{s.uri} {s.suite}" in message or f"{s.uri}/{s.suite}" in message:
                return i, s, k
        return None

    def update(self) -> None:
        """``apt-get update``: every source's Release must verify with its keyring and list what it should."""
        proc = self._run([self.apt_get, "update", "-q"], "apt-get update")
        said = [ln.strip() for ln in (proc.stdout + proc.stderr).splitlines()]
        for ln in said:
            if re.search(r"GPG error|is not signed|NO_PUBKEY|EXPKEYSIG|BADSIG|signatures were invalid", ln):
                found = self._source_of(ln)
                if found is not None:
                    i, s, k = found
                    raise LockError(
                        f"the Release file of {s.uri} {s.suite} does not verify with keyring {k}: {ln}",
                        where=f"{_WHERE}.sources[{i}]",
                        hint="give the source the keyring its archive is signed with (keyring: PATH, .gpg or "
                             f".asc); Debian's archive keyring is {DEFAULT_KEYRING}")
            m = re.search(r"doesn't have the component '([^']+)'|doesn't support architecture '([^']+)'", ln)
            if m:
                found = self._source_of(ln)
                where = f"{_WHERE}.sources[{found[0]}]" if found else _WHERE
                what = f"the component {m.group(1)!r}" if m.group(1) else f"the architecture {m.group(2)!r}"
                raise LockError(f"the apt source does not have {what}: {ln}", where=where,
                                hint="check the suite's components (main, contrib, non-free, non-free-firmware)")
        errors = [ln for ln in said if ln.startswith(("E:", "Err:"))] + [
            ln for ln in said if re.match(r"^(W: )?(Failed to fetch|GPG error)", ln)]
        if proc.returncode != 0 or errors:
            found = self._source_of("\n".join(errors))
            where = f"{_WHERE}.sources[{found[0]}]" if found else _WHERE
            text = "\n    ".join(errors or said[-10:])
            raise LockError(f"apt-get update failed:\n    {text}", where=where,
                            hint="check the source's uri and suite, and that this machine reaches it")

    def print_uris(self, section: AptSection, local: Sequence[Path]) -> list[_Printed]:
        args = [self.apt_get, "install", "--print-uris", "-qq", "-y", "--no-install-recommends", "--no-remove",
                "-o", "Debug::NoLocking=true", *section.packages, *(str(p) for p in local)]
        proc = self._run(args, "apt-get install --print-uris")
        if proc.returncode != 0:
            raise self._install_error(proc.stdout + proc.stderr, section)
        out: list[_Printed] = []
        for ln in proc.stdout.splitlines():
            m = _URI_LINE.match(ln.strip())
            if m is None:
                continue
            name, version, arch = (unquote(x) for x in m["name"].removesuffix(".deb").split("_"))
            out.append(_Printed(url=m["url"], package=name, version=version, arch=arch, size=int(m["size"]),
                                hash=m["hash"]))
        return out

    def show(self, selectors: list[str]) -> list[dict[str, str]]:
        proc = self._run([self.apt_cache, "show", *selectors], "apt-cache show")
        if proc.returncode != 0:
            raise LockError(f"apt-cache show failed: {proc.stderr.strip()}", where=_WHERE)
        return parse_deb822(proc.stdout)

    def _suites(self) -> str:
        return ", ".join(f"{s.uri} {s.suite} {' '.join(s.components)}".strip() for s, _ in self.sources)

    def _available(self, name: str) -> list[str]:
        proc = self._run([self.apt_cache, "madison", name], "apt-cache madison")
        return [parts[1].strip() for ln in proc.stdout.splitlines() if len(parts := ln.split("|")) >= 3]

    def _install_error(self, said: str, section: AptSection) -> LockError:
        where = f"{_WHERE}.packages"
        suites = f"{self._suites()} ({self.arch})"
        missing = re.findall(r"^E: Unable to locate package (\S+)", said, re.MULTILINE)
        if missing:
            return LockError(f"not in the target's apt sources {suites}: {', '.join(missing)}", where=where,
                             hint="check the name (apt-cache search on a target), or add the component "
                                  "(contrib, non-free, non-free-firmware) or source that provides it")
        pins = re.findall(r"^E: Version '([^']+)' for '([^']+)' was not found", said, re.MULTILINE)
        if pins:
            parts = []
            for version, name in pins:
                avail = self._available(name)
                parts.append(f"{name}={version} matches no version of {name}"
                             + (f" (available: {', '.join(avail)})" if avail else ""))
            return LockError(f"{'; '.join(parts)} in {suites}", where=where,
                             hint="pin a version the suite has (a trailing * globs, e.g. nvidia-driver=535.*)")
        none = re.findall(r"^E: Package '([^']+)' has no installation candidate", said, re.MULTILINE)
        if none:
            return LockError(f"no installable version of {', '.join(none)} in {suites}: only referenced there (a "
                             "virtual package, or one of a component or source not listed)", where=where,
                             hint="add the component (contrib, non-free, non-free-firmware) or source that has it, "
                                  "or name the real package that provides it")
        if "remove is disabled" in said:
            return LockError("installing these packages would remove packages of the base package set:\n    "
                             + "\n    ".join(said.strip().splitlines()[-15:]), where=where,
                             hint="a conflict with the base; check the base snapshot and the versions pinned")
        text = "\n    ".join(said.strip().splitlines()[-25:])
        return LockError(f"apt cannot install these packages on the base package set:\n    {text}", where=where,
                         hint="apt's message above names the dependency it cannot satisfy")
