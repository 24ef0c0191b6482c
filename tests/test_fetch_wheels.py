"""Fetching locked wheels into the content-addressed cache: real wheels, bad bytes, resume, file://."""

from __future__ import annotations

import errno
import hashlib
import http.server
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from packager import hashing
from packager.cache import Cache
from packager.errors import CacheError, FetchError
from packager.fetch import wheels as fetch_mod
from packager.fetch.wheels import fetch_wheels
from packager.lock import WheelLock
from packager.lock.python import lock_python
from packager.spec import SpecFile, parse_spec

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB that is not all one byte
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch_mod, "BACKOFF_S", 0.0)


def wheel_lock(url: str, data: bytes = PAYLOAD, *, sha256: str | None = None, name: str = "demo") -> WheelLock:
    return WheelLock(name=name, version="1.0", filename=f"{name}-1.0-py3-none-any.whl", url=url,
                     sha256=sha256 or hashlib.sha256(data).hexdigest(), size=len(data))


def tmp_leftovers(cache: Cache) -> list[str]:
    return sorted(p.name for p in (cache.root / "tmp").iterdir())


# --- a small file server on 127.0.0.1 with scripted misbehaviour ------------------------------------------


@dataclass
class Behaviour:
    body: bytes = PAYLOAD
    cut_first: int | None = None  # first request: announce the full length, send this many bytes, hang up
    ranges: bool = True  # honour Range requests
    status: int = 200
    seen_ranges: list[str | None] = field(default_factory=list)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    behaviour: Behaviour

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        b = self.server.behaviour  # type: ignore[attr-defined]
        rng = self.headers.get("Range")
        b.seen_ranges.append(rng)
        if b.status != 200:
            self.send_response(b.status)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body, start = b.body, 0
        if rng and b.ranges:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if b.cut_first is not None and len(b.seen_ranges) == 1:
            self.wfile.write(body[start:b.cut_first])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body[start:])


@pytest.fixture
def server() -> Iterator[tuple[str, Behaviour]]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    behaviour = Behaviour()
    httpd.behaviour = behaviour  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/demo-1.0-py3-none-any.whl", behaviour
    finally:
        httpd.shutdown()
        httpd.server_close()


# --- real wheels from the index -------------------------------------------------------------------------


@pytest.mark.network
def test_real_wheels_are_fetched_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = yaml.safe_dump({"bundle": {"name": "t", "version": "1"}, "target": {"python": "3.12"},
                           "python": {"requirements": ["six", "idna", "pyyaml", "packaging"]}})
    spec = SpecFile(path=tmp_path / "models.yaml", spec=parse_spec(text), sha256="0" * 64)
    lock = lock_python(spec)
    cache = Cache(tmp_path / "cache")
    got = fetch_wheels(lock.wheels, cache, jobs=4)
    assert got == {w.filename: w.sha256 for w in lock.wheels}
    for w in lock.wheels:
        assert cache.has(w.sha256, w.size)
        assert hashing.sha256_file(cache.path(w.sha256)) == (w.sha256, w.size)
    assert tmp_leftovers(cache) == []

    def no_download(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a cached wheel was downloaded again")

    monkeypatch.setattr(fetch_mod, "_download", no_download)
    assert fetch_wheels(lock.wheels, cache) == got


# --- a local server -------------------------------------------------------------------------------------


def test_wrong_bytes_are_refused_and_never_cached(tmp_path: Path, server: tuple[str, Behaviour]) -> None:
    url, behaviour = server
    behaviour.body = PAYLOAD[:-1] + b"X"  # same size, other bytes
    cache = Cache(tmp_path / "cache")
    with pytest.raises(FetchError) as err:
        fetch_wheels([wheel_lock(url)], cache)
    text = str(err.value)
    assert "demo-1.0-py3-none-any.whl" in text
    assert PAYLOAD_SHA in text and hashlib.sha256(behaviour.body).hexdigest() in text
    assert not cache.has(PAYLOAD_SHA)
    assert [p for p in (cache.root / "sha256").rglob("*") if p.is_file()] == []
    assert not any(n.endswith(".part") for n in tmp_leftovers(cache))


def test_interrupted_download_resumes_with_a_range_request(tmp_path: Path, server: tuple[str, Behaviour]) -> None:
    url, behaviour = server
    behaviour.cut_first = 300_000
    cache = Cache(tmp_path / "cache")
    assert fetch_wheels([wheel_lock(url)], cache) == {"demo-1.0-py3-none-any.whl": PAYLOAD_SHA}
    assert behaviour.seen_ranges == [None, "bytes=300000-"]
    assert hashing.sha256_file(cache.path(PAYLOAD_SHA)) == (PAYLOAD_SHA, len(PAYLOAD))
    assert tmp_leftovers(cache) == []


def test_a_partial_left_by_an_earlier_run_is_resumed(tmp_path: Path, server: tuple[str, Behaviour]) -> None:
    url, behaviour = server
    cache = Cache(tmp_path / "cache")
    (cache.root / "tmp" / f"{PAYLOAD_SHA}.part").write_bytes(PAYLOAD[:123_456])
    fetch_wheels([wheel_lock(url)], cache)
    assert behaviour.seen_ranges == ["bytes=123456-"]
    assert cache.has(PAYLOAD_SHA, len(PAYLOAD))


def test_a_server_ignoring_range_restarts_cleanly(tmp_path: Path, server: tuple[str, Behaviour]) -> None:
    url, behaviour = server
    behaviour.ranges = False
    cache = Cache(tmp_path / "cache")
    (cache.root / "tmp" / f"{PAYLOAD_SHA}.part").write_bytes(PAYLOAD[:5000])
    fetch_wheels([wheel_lock(url)], cache)
    assert behaviour.seen_ranges == ["bytes=5000-"]
    assert hashing.sha256_file(cache.path(PAYLOAD_SHA)) == (PAYLOAD_SHA, len(PAYLOAD))


def test_a_garbage_partial_is_caught_by_the_digest(tmp_path: Path, server: tuple[str, Behaviour]) -> None:
    url, _ = server
    cache = Cache(tmp_path / "cache")
    (cache.root / "tmp" / f"{PAYLOAD_SHA}.part").write_bytes(b"\0" * 5000)
    with pytest.raises(FetchError, match="does not match the lock"):
        fetch_wheels([wheel_lock(url)], cache)
    assert not cache.has(PAYLOAD_SHA) and not (cache.root / "tmp" / f"{PAYLOAD_SHA}.part").exists()
    fetch_wheels([wheel_lock(url)], cache)  # the next run starts from scratch and succeeds
    assert cache.has(PAYLOAD_SHA, len(PAYLOAD))


def test_http_errors_are_not_retried_forever(tmp_path: Path, server: tuple[str, Behaviour]) -> None:
    url, behaviour = server
    behaviour.status = 404
    with pytest.raises(FetchError, match="HTTP 404"):
        fetch_wheels([wheel_lock(url)], Cache(tmp_path / "cache"))
    assert len(behaviour.seen_ranges) == 1
    behaviour.status, behaviour.seen_ranges = 503, []
    with pytest.raises(FetchError, match="after 3 tries"):
        fetch_wheels([wheel_lock(url)], Cache(tmp_path / "cache"))
    assert len(behaviour.seen_ranges) == 3


def test_disk_full_is_a_cache_error(tmp_path: Path, server: tuple[str, Behaviour],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    url, _ = server

    def full(self: hashing.HashingWriter, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(hashing.HashingWriter, "write", full)
    cache = Cache(tmp_path / "cache")
    with pytest.raises(CacheError, match="disk full") as err:
        fetch_wheels([wheel_lock(url)], cache)
    assert err.value.hint and "free space" in err.value.hint
    assert not cache.has(PAYLOAD_SHA)


# --- file:// (find_links folders) ------------------------------------------------------------------------


def test_file_urls_are_copied_and_checked(tmp_path: Path) -> None:
    src = tmp_path / "wheels" / "demo-1.0-py3-none-any.whl"
    src.parent.mkdir()
    src.write_bytes(PAYLOAD)
    cache = Cache(tmp_path / "cache")
    assert fetch_wheels([wheel_lock(src.as_uri())], cache) == {src.name: PAYLOAD_SHA}
    assert cache.path(PAYLOAD_SHA).read_bytes() == PAYLOAD
    other = hashlib.sha256(b"other").hexdigest()
    with pytest.raises(FetchError, match=other):
        fetch_wheels([wheel_lock(src.as_uri(), sha256=other, name="other")], cache)
    assert not cache.has(other)
    with pytest.raises(FetchError, match="not found"):
        fetch_wheels([wheel_lock((tmp_path / "gone.whl").as_uri(), b"x")], cache)
