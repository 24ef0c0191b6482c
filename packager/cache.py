"""The content-addressed download cache: ``<root>/sha256/<2 hex>/<digest>``.

A blob only ever appears under its final name after its bytes were hashed and matched, so the cache is
never poisoned: downloads go to ``<root>/tmp/`` and are renamed into place atomically.
Root: ``--cache DIR``, else ``$AIRLOCK_CACHE``, else ``$XDG_CACHE_HOME/airlock``, else ``~/.cache/airlock``.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path

from packager.errors import CacheError, FetchError
from packager.hashing import sha256_file


def default_cache_dir() -> Path:
    if env := os.environ.get("AIRLOCK_CACHE"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "airlock"


class Cache:
    def __init__(self, root: Path | None = None) -> None:
        self.root = (root or default_cache_dir()).expanduser().resolve()
        try:
            (self.root / "sha256").mkdir(parents=True, exist_ok=True)
            (self.root / "tmp").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CacheError(f"cannot create the cache: {exc.strerror}", where=str(self.root),
                             hint="pass --cache DIR or set AIRLOCK_CACHE to a writable folder") from None

        self._sweep_tmp()

    def _sweep_tmp(self, max_age_s: float = 2 * 86400) -> None:
        """Drop scratch files and folders of builds killed long ago (recent ones may belong to a running
        build, and partial downloads are kept a while so a rerun resumes them)."""
        cutoff = time.time() - max_age_s
        for entry in (self.root / "tmp").iterdir():
            try:
                if entry.lstat().st_mtime >= cutoff:
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
            except OSError:
                continue

    def path(self, digest: str) -> Path:
        return self.root / "sha256" / digest[:2] / digest

    def has(self, digest: str, size: int | None = None) -> bool:
        try:
            st = self.path(digest).stat()
        except FileNotFoundError:
            return False
        return size is None or st.st_size == size

    def tmp_path(self, hint: str) -> Path:
        """A fresh, unique temporary file name inside the cache (same filesystem: rename is atomic)."""
        fd, name = tempfile.mkstemp(prefix=f"{Path(hint).name[:60]}.", suffix=".incomplete", dir=self.root / "tmp")
        os.close(fd)
        return Path(name)

    def commit(self, tmp: Path, digest: str) -> Path:
        """Move a fully written and verified temporary file to its final, content-addressed name."""
        final = self.path(digest)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp.chmod(0o444)
        tmp.replace(final)
        return final

    def ingest(self, src: Path, expected_sha256: str | None = None, *, what: str | None = None) -> str:
        """Copy (or hard-link) a file into the cache after checking its digest. Returns the digest."""
        digest, _ = sha256_file(src)
        if expected_sha256 is not None and digest != expected_sha256:
            raise FetchError(
                f"content does not match the lock: expected sha256 {expected_sha256}, got {digest}",
                where=what or str(src),
                hint="the source changed after locking; run with --relock if that is expected",
            )
        if self.has(digest):
            return digest
        tmp = self.tmp_path(src.name)
        try:
            # always a copy: a hard link would share the inode with a source that may be edited later
            self._copy(src, tmp)
            if sha256_file(tmp)[0] != digest:
                raise FetchError("file changed while it was being copied", where=str(src))
            self.commit(tmp, digest)
        finally:
            tmp.unlink(missing_ok=True)
        return digest

    def put_bytes(self, data: bytes, name: str = "data") -> str:
        """Store small in-memory content (the spec, the lock) by digest."""
        digest = hashlib.sha256(data).hexdigest()
        if not self.has(digest, len(data)):
            tmp = self.tmp_path(name)
            try:
                tmp.write_bytes(data)
                self.commit(tmp, digest)
            finally:
                tmp.unlink(missing_ok=True)
        return digest

    @staticmethod
    def _copy(src: Path, dst: Path) -> None:
        try:
            shutil.copyfile(src, dst)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise CacheError("disk full while writing the cache", where=str(dst.parent),
                                 hint="free space or point --cache at a larger disk") from None
            raise
