"""Download the locked .debs into the content-addressed cache: the wheels' downloader, shared.

Debs from an apt source go in parallel, hashed while they stream, resumed after an interruption, and
reach their cache name only once sha256 and size match the lock. Debs the spec lists by path are copied
in and checked against the sha256 the spec gives.
"""

from __future__ import annotations

from collections.abc import Sequence

from packager.cache import Cache
from packager.fetch.wheels import fetch_files
from packager.lock import DebLock

__all__ = ["fetch_debs"]


def fetch_debs(debs: Sequence[DebLock], cache: Cache, jobs: int = 8) -> dict[str, str]:
    """Put every .deb of the lock into ``cache``; return ``{filename: sha256}``. Raises FetchError or
    CacheError like :func:`packager.fetch.wheels.fetch_wheels`."""
    return fetch_files(debs, cache, jobs, what="debs")
