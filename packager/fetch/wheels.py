"""Download the locked wheels (and any other locked files: .debs) into the content-addressed cache.

Files go in parallel, largest first, hashed while they stream. An interrupted download leaves
``<cache>/tmp/<sha256>.part`` behind and the next run resumes it with an HTTP Range request. Nothing
reaches its final cache name before its sha256 and size match the lock.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse
from urllib.request import url2pathname

import httpx

from packager import __version__
from packager.cache import Cache
from packager.errors import AirlockError, CacheError, FetchError
from packager.hashing import HashingWriter, sha256_file
from packager.lock import WheelLock
from packager.progress import Progress

__all__ = ["Downloadable", "fetch_files", "fetch_wheels"]

log = logging.getLogger("packager")

TRIES = 3
BACKOFF_S = 1.0
_TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class _Transient(Exception):
    """A failure worth another try (connection dropped, server overloaded, short body)."""


class Downloadable(Protocol):
    """What the downloader needs of a locked file (a WheelLock, a DebLock)."""

    @property
    def filename(self) -> str: ...
    @property
    def url(self) -> str: ...  # http(s)://, or file:/// for a local file (copied and checked)
    @property
    def sha256(self) -> str: ...
    @property
    def size(self) -> int | None: ...


def fetch_wheels(wheels: Sequence[WheelLock], cache: Cache, jobs: int = 8) -> dict[str, str]:
    """Put every wheel of the lock into ``cache``; return ``{filename: sha256}`` for all of them.

    Wheels already cached are not downloaded again. Raises FetchError when a wheel cannot be fetched
    or its bytes differ from the lock, CacheError when the cache cannot be written (disk full).
    """
    return fetch_files(wheels, cache, jobs, what="wheels")


def fetch_files(items: Sequence[Downloadable], cache: Cache, jobs: int = 8, *, what: str = "files") -> dict[str, str]:
    """Put every locked file into ``cache`` (verified: sha256 and size); return ``{filename: sha256}``.
    ``what`` names them in progress bars, logs and errors ("wheels", "debs")."""
    result = {w.filename: w.sha256 for w in items}
    todo: dict[str, Downloadable] = {}
    for w in items:
        if w.sha256 not in todo and not cache.has(w.sha256, w.size):
            todo[w.sha256] = w
    if not todo:
        return result
    ordered = sorted(todo.values(), key=lambda w: w.size or 0, reverse=True)
    total = sum(w.size or 0 for w in ordered)
    log.info("%s: %d of %d to fetch", what, len(ordered), len(items))
    stop = threading.Event()
    limits = httpx.Limits(max_connections=max(jobs, 1), max_keepalive_connections=max(jobs, 1))
    timeout = httpx.Timeout(30.0, read=60.0)
    # identity: the bytes on the wire are the file, so resume offsets and hashes mean the same thing
    headers = {"User-Agent": f"airlock-packager/{__version__}", "Accept-Encoding": "identity"}
    with (
        Progress(what, total=total or None) as progress,
        httpx.Client(limits=limits, timeout=timeout, follow_redirects=True, headers=headers) as client,
        ThreadPoolExecutor(max_workers=max(jobs, 1), thread_name_prefix="fetch") as pool,
    ):
        def one(w: Downloadable) -> None:
            if stop.is_set():
                return
            try:
                _fetch_one(w, cache, client, progress)
            except BaseException:
                stop.set()
                raise

        futures = [pool.submit(one, w) for w in ordered]
        wait(futures, return_when=FIRST_EXCEPTION)
        for f in futures:
            f.cancel()
        wait(futures)
    errors = [e for f in futures if not f.cancelled() and (e := f.exception()) is not None]
    if not errors:
        return result
    if len(errors) > 1 and all(isinstance(e, FetchError) for e in errors):
        raise FetchError(f"{len(errors)} {what} failed:\n  - " + "\n  - ".join(str(e) for e in errors),
                         hint="rerun to resume; partial downloads are kept in the cache's tmp folder")
    raise errors[0]


def _fetch_one(w: Downloadable, cache: Cache, client: httpx.Client, progress: Progress) -> None:
    scheme = urlparse(w.url).scheme
    if scheme == "file":
        src = Path(url2pathname(urlparse(w.url).path))
        if not src.is_file():
            raise FetchError("file not found", where=str(src),
                             hint="a local file the lock names (find_links folder, spec deb) was moved or "
                                  "deleted after locking; restore it or --relock")
        cache.ingest(src, expected_sha256=w.sha256, what=w.filename)
        progress.update(w.size or 0)
        return
    if scheme not in ("http", "https"):
        raise FetchError(f"unsupported URL scheme {scheme!r}", where=w.url)
    with _locked(cache.root / "tmp" / f"{w.sha256}.lock"):
        if cache.has(w.sha256, w.size):  # another process fetched it while we waited
            progress.update(w.size or 0)
            return
        part = cache.root / "tmp" / f"{w.sha256}.part"
        for attempt in range(1, TRIES + 1):
            try:
                _download(w, part, client, progress)
                break
            except _Transient as exc:
                if attempt == TRIES:
                    raise FetchError(f"download failed after {TRIES} tries: {exc}", where=w.url,
                                     hint="rerun to resume; the partial download is kept") from None
                delay = BACKOFF_S * 2 ** (attempt - 1)
                log.warning("%s: %s; retrying in %.0f s", w.filename, exc, delay)
                time.sleep(delay)
        try:
            cache.commit(part, w.sha256)
        except OSError as exc:
            raise _cache_error(exc, part) from None
        (cache.root / "tmp" / f"{w.sha256}.lock").unlink(missing_ok=True)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock between processes sharing one cache (two builds never write one partial)."""
    try:
        f = path.open("a")
    except OSError as exc:
        raise _cache_error(exc, path) from None
    try:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield
    finally:
        f.close()


def _cache_error(exc: OSError, path: Path) -> AirlockError:
    if exc.errno == errno.ENOSPC:
        return CacheError("disk full while writing the cache", where=str(path.parent),
                          hint="free space or point --cache at a larger disk; rerun to resume")
    return CacheError(f"cannot write the cache: {exc.strerror}", where=str(path))


def _download(w: Downloadable, part: Path, client: httpx.Client, progress: Progress) -> None:
    """One attempt: resume ``part`` if present, stream the rest, verify. Raises _Transient to retry."""
    offset = part.stat().st_size if part.exists() else 0
    if w.size is not None and offset > w.size:
        part.unlink()
        offset = 0
    if offset and offset == w.size:  # a complete partial left by an earlier run
        digest, size = sha256_file(part)
        _verify(w, part, digest, size)
        progress.update(size)
        return
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    counted = 0
    try:
        with client.stream("GET", w.url, headers=headers) as r:
            if r.status_code == 416:  # the partial does not fit this file any more: start over
                part.unlink(missing_ok=True)
                raise _Transient("server refused the resume range")
            if r.status_code in _TRANSIENT_STATUS:
                raise _Transient(f"HTTP {r.status_code}")
            if r.status_code not in (200, 206):
                raise FetchError(f"HTTP {r.status_code} {r.reason_phrase}", where=w.url,
                                 hint="the server no longer serves this file; --relock to resolve again")
            resume = offset > 0 and r.status_code == 206 and _range_start(r) == offset
            if offset and not resume:
                log.info("%s: server ignored the resume request; downloading again", w.filename)
            try:
                with HashingWriter(part, append=resume) as out:
                    counted = out.size
                    progress.update(counted)
                    for chunk in r.iter_raw():  # as it arrives: a dropped connection keeps all it got
                        out.write(chunk)
                        progress.update(len(chunk))
                        counted += len(chunk)
                        if w.size is not None and out.size > w.size:
                            break
                    out.close()
                    digest, size = out.hexdigest(), out.size
            except OSError as exc:
                raise _cache_error(exc, part) from None
    except httpx.TransportError as exc:
        progress.update(-counted)
        raise _Transient(f"{type(exc).__name__}: {exc}") from None
    if w.size is not None and size < w.size:
        progress.update(-counted)
        raise _Transient(f"connection ended after {size} of {w.size} bytes")
    try:
        _verify(w, part, digest, size)
    except FetchError:
        progress.update(-counted)
        raise


def _range_start(r: httpx.Response) -> int | None:
    value = r.headers.get("content-range", "")  # "bytes 100-199/200"
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def _verify(w: Downloadable, part: Path, digest: str, size: int) -> None:
    """Compare what was written with the lock; a mismatch deletes the file and raises FetchError."""
    if digest == w.sha256 and (w.size is None or size == w.size):
        return
    part.unlink(missing_ok=True)
    expected_size = f"{w.size} bytes" if w.size is not None else "size unknown"
    raise FetchError(
        f"{w.filename} does not match the lock: expected sha256 {w.sha256} ({expected_size}), "
        f"got {digest} ({size} bytes); the file was discarded",
        where=w.url,
        hint="the index served other bytes than it did at lock time; check the index or --relock",
    )
