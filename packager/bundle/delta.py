"""Delta bundles: the signed manifest of a full release, but only the blobs an earlier bundle lacks.

A delta names its base (bundle name, version, sha256 of the base's ``manifest.json``) and lists the
digests the base provides; both are part of the signed manifest. Building one needs only the base's
manifest; verifying or unpacking the complete release needs the base bundle itself (docs/delta.md).
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from packaging.version import InvalidVersion, Version

from packager.bundle.manifest import MANIFEST, SIGNATURE, BaseRef, Manifest, parse_manifest, read_manifest_bytes
from packager.errors import BundleError, SignatureError
from packager.signing import PublicKey, verify

log = logging.getLogger("packager")


@dataclass(frozen=True)
class Base:
    """A base as given to ``build --base``: a bundle folder or a bare manifest.json."""

    source: Path
    raw: bytes
    manifest: Manifest
    signed_by: str | None  # key id when its signature was checked, None when no key was given

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()


def _version_key(v: str) -> tuple[object, ...]:
    """Order bundle versions: PEP 440 when both parse, else digit runs as numbers (1.10 after 1.9)."""
    return tuple((0, int(x), "") if x.isdigit() else (1, 0, x) for x in re.findall(r"\d+|[A-Za-z]+", v))


def is_older(base: str, new: str) -> bool:
    try:
        return Version(base) < Version(new)
    except InvalidVersion:
        return _version_key(base) < _version_key(new)


def load_base(path: Path | str, keys: list[PublicKey] | None = None) -> Base:
    """Read the base of a delta. Its signature is checked when keys are given (``--base-pubkey``)."""
    src = Path(path)
    if src.is_dir():
        raw = read_manifest_bytes(src)
        manifest_path, sig_path = src / MANIFEST, src / SIGNATURE
    elif src.is_file():
        raw = src.read_bytes()
        manifest_path, sig_path = src, src.with_name(src.name + ".minisig")
    else:
        raise BundleError("the base is neither a bundle folder nor a manifest.json", where=str(src),
                          hint="pass --base the previous release's bundle folder or its manifest.json")
    signed_by = None
    if keys:
        try:
            sig_text = sig_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SignatureError("the base's signature is missing", where=str(sig_path),
                                 hint="keep manifest.json.minisig beside the base's manifest.json, "
                                      "or leave out --base-pubkey") from None
        signed_by = verify(raw, sig_text, keys, source=str(sig_path)).key.key_id_hex
    manifest = parse_manifest(raw, str(manifest_path))
    if manifest.base is not None:
        b = manifest.base
        raise BundleError(f"the base {manifest.name} {manifest.version} is itself a delta (of {b.name} {b.version})",
                          where=str(src), hint=f"build the delta against a full bundle, e.g. {b.name} {b.version} "
                                               "or a full build of this one (docs/delta.md)")
    return Base(src, raw, manifest, signed_by)


def check_base_fits(base: Base, name: str, version: str) -> None:
    """Same bundle name, strictly older version; BundleError naming both otherwise."""
    b = base.manifest
    if b.name != name:
        raise BundleError(f"the base is bundle {b.name!r} {b.version}, this build is bundle {name!r} {version}",
                          where=str(base.source), hint="a delta is made against an earlier release of the same bundle")
    if not is_older(b.version, version):
        raise BundleError(f"the base version {b.version} is not older than this build's version {version}",
                          where=str(base.source),
                          hint="raise bundle.version in the spec, or pass the previous release as --base")


def make_delta(manifest: Manifest, base: Base) -> Manifest:
    """The release's manifest with a reference to ``base``: every blob the base also carries is left to it."""
    check_base_fits(base, manifest.name, manifest.version)
    have = base.manifest.blobs()
    provides = sorted(d for d, size in manifest.blobs().items() if have.get(d) == size)
    ref = BaseRef(name=base.manifest.name, version=base.manifest.version, manifest_sha256=base.sha256,
                  provides=provides)
    return manifest.model_copy(update={"base": ref})


def describe_ref(ref: BaseRef) -> str:
    return f"{ref.name} {ref.version} (manifest sha256 {ref.manifest_sha256})"


def needs_base(manifest: Manifest, bundle: Path, verb: str) -> BundleError:
    """The error for a delta used without its base."""
    ref = manifest.base
    assert ref is not None
    carried = len(manifest.carried())
    return BundleError(
        f"this is a delta bundle: it carries {carried} of the release's {len(manifest.blobs())} blobs and needs the "
        f"base bundle {describe_ref(ref)} to {verb}",
        where=str(bundle),
        hint=f"pass --base PATH with the full bundle {ref.name}-{ref.version} (the folder with its manifest.json)",
    )


def open_base(manifest: Manifest, base: Path | str) -> Path:
    """Check that the bundle folder ``base`` is the one the delta's signed reference names."""
    ref = manifest.base
    root = Path(base)
    if ref is None:
        raise BundleError(f"{manifest.name} {manifest.version} is a full bundle, not a delta; it needs no base",
                          where=str(root), hint="leave out --base")
    raw = read_manifest_bytes(root)
    found = hashlib.sha256(raw).hexdigest()
    if found != ref.manifest_sha256:
        what = ""
        try:
            m = parse_manifest(raw, str(root / MANIFEST))
            what = f" (that is {m.name} {m.version})"
        except BundleError:
            pass
        raise BundleError(
            f"not the base this delta needs: its manifest.json has sha256 {found}{what}, the delta expects "
            f"{ref.manifest_sha256} ({ref.name} {ref.version})",
            where=str(root),
            hint=f"pass --base the bundle {ref.name}-{ref.version} the delta was built against, as it was shipped",
        )
    return root
