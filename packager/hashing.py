"""Streaming sha256, and hashing many files in parallel (hashlib releases the GIL on large buffers)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

CHUNK = 1024 * 1024


def sha256_file(path: Path | str) -> tuple[str, int]:
    """Return (hex digest, size) of a file, streamed."""
    with Path(path).open("rb") as f:
        h = hashlib.file_digest(f, "sha256")
        size = f.tell()
    return h.hexdigest(), size


def default_jobs() -> int:
    return max(2, min(16, (os.cpu_count() or 2)))


def hash_many(
    paths: Iterable[Path],
    jobs: int | None = None,
    on_done: Callable[[Path, int], None] | None = None,
) -> dict[Path, tuple[str, int] | OSError]:
    """Hash files in parallel, largest first. An unreadable file maps to its OSError instead of raising."""
    items = list(paths)

    def size_of(p: Path) -> int:
        try:
            return p.stat().st_size
        except OSError:
            return 0

    items.sort(key=size_of, reverse=True)

    def one(p: Path) -> tuple[Path, tuple[str, int] | OSError]:
        try:
            r: tuple[str, int] | OSError = sha256_file(p)
        except OSError as exc:
            r = exc
        if on_done is not None:
            on_done(p, r[1] if isinstance(r, tuple) else 0)
        return p, r

    with ThreadPoolExecutor(max_workers=jobs or default_jobs()) as pool:
        return dict(pool.map(one, items))


class HashingWriter:
    """A file writer that hashes what passes through it, so a download is hashed while it streams."""

    def __init__(self, path: Path, *, append: bool = False) -> None:
        self._h = hashlib.sha256()
        self.size = 0
        if append and path.exists():
            with path.open("rb") as f:
                while chunk := f.read(CHUNK):
                    self._h.update(chunk)
                    self.size += len(chunk)
        self._f = path.open("ab" if append else "wb")

    def write(self, data: bytes) -> None:
        self._f.write(data)
        self._h.update(data)
        self.size += len(data)

    def hexdigest(self) -> str:
        return self._h.hexdigest()

    def close(self) -> None:
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()

    def __enter__(self) -> HashingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._f.closed:
            self._f.close()
