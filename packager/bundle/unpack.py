"""Materialise a verified bundle's logical tree (``wheels/…``, ``models/<name>/…``) under a destination.

Atomic: the tree is built in ``DEST.partial-*`` beside DEST and renamed to DEST only when complete, with
``.airlock-manifest.json`` (a copy of the signed manifest) written last inside it. An interrupted unpack
leaves no DEST at all.

A delta bundle unpacks with its base (``base=``): the tree, marker included, is the one the full bundle of
the same release gives, since the marker is the release's manifest without the delta's base reference.
"""

from __future__ import annotations

import errno
import shutil
import tempfile
from pathlib import Path

from packager.bundle.assemble import link_or_copy
from packager.bundle.delta import needs_base
from packager.bundle.verify import VerifiedBundle, check_signature, verify_bundle
from packager.errors import BundleError
from packager.signing import PublicKey

RELEASE_MARKER = ".airlock-manifest.json"


def unpack(bundle: Path | str, dest: Path | str, keys: list[PublicKey], *, jobs: int | None = None,
           base: Path | str | None = None) -> Path:
    if base is None:  # a delta without its base: say so before hashing anything
        manifest, _ = check_signature(Path(bundle), keys)
        if manifest.base is not None:
            raise needs_base(manifest, Path(bundle), "unpack the release")
    vb = verify_bundle(bundle, keys, jobs=jobs, base=base)
    return materialise(vb, Path(dest))


def materialise(vb: VerifiedBundle, dest: Path) -> Path:
    if not vb.complete:
        raise needs_base(vb.manifest, vb.path, "unpack the release")
    dest = dest.absolute()
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise BundleError("destination already exists and is not empty", where=str(dest),
                          hint="unpack into a new folder; releases are never modified in place")
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    try:
        for f in vb.manifest.files:
            target = work / f.path
            target.parent.mkdir(parents=True, exist_ok=True)
            link_or_copy(vb.blob(f.sha256), target)
        (work / RELEASE_MARKER).write_bytes(vb.manifest.full().dumps())
        work.chmod(0o755)
        if dest.exists():
            dest.rmdir()
        work.rename(dest)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise BundleError("disk full while unpacking", where=str(dest.parent),
                              hint="free space and run unpack again; nothing was left behind") from None
        raise
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return dest
