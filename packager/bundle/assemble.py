"""Write a bundle directory from a manifest and the blobs in the cache, then sign it.

The bundle is written under a temporary name beside its final place and renamed into place only when
complete and signed, so an interrupted build never leaves something that looks like a bundle.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

from packager.bundle.manifest import BLOBS, MANIFEST, SIGNATURE, Manifest
from packager.cache import Cache
from packager.errors import BundleError, CacheError
from packager.signing import SecretKey, sign


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link when on the same filesystem (blobs are read-only), else copy."""
    try:
        os.link(src, dst)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EACCES):
            raise
        shutil.copyfile(src, dst)
        dst.chmod(0o444)


def assemble(manifest: Manifest, cache: Cache, out: Path, key: SecretKey) -> Path:
    """Write ``out/<name>-<version>/`` atomically and return its path."""
    missing = [d for d, size in manifest.carried().items() if not cache.has(d, size)]  # a delta: only its own
    if missing:
        raise CacheError(f"{len(missing)} blob(s) of the manifest are not in the cache (first: {missing[0]})",
                         where=str(cache.root), hint="run the build again; it fetches what is missing")
    out.mkdir(parents=True, exist_ok=True)
    final = out / manifest.dirname
    work = Path(tempfile.mkdtemp(prefix=f".{manifest.dirname}.", suffix=".partial", dir=out))
    try:
        blob_dir = work / BLOBS
        blob_dir.mkdir(parents=True)
        for digest in sorted(manifest.carried()):
            link_or_copy(cache.path(digest), blob_dir / digest)
        raw = manifest.dumps()
        (work / MANIFEST).write_bytes(raw)
        (work / SIGNATURE).write_text(sign(raw, key, file_name=MANIFEST), encoding="utf-8")
        work.chmod(0o755)
        _swap_into_place(work, final)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise BundleError("disk full while writing the bundle", where=str(out),
                              hint="free space or pass --out on a larger disk; nothing was left behind") from None
        raise
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return final


def _swap_into_place(work: Path, final: Path) -> None:
    """Replace ``final`` with ``work``: at every instant ``final`` is the old bundle or the new one."""
    if not final.exists():
        work.rename(final)
        return
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    final.rename(old)
    try:
        work.rename(final)
    except OSError:
        old.rename(final)
        raise
    shutil.rmtree(old, ignore_errors=True)
