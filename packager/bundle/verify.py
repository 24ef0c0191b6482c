"""Offline verification: one signature check, then every blob's size and digest, hashed in parallel."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from packager.bundle.delta import open_base
from packager.bundle.manifest import BLOBS, MANIFEST, SIGNATURE, Manifest, parse_manifest, read_manifest_bytes
from packager.errors import BundleError, Problem, SignatureError, VerifyError
from packager.hashing import hash_many
from packager.progress import Progress
from packager.signing import PublicKey, Verified, verify


@dataclass(frozen=True)
class VerifiedBundle:
    path: Path
    manifest: Manifest
    signature: Verified
    #: a delta verified with its base: the base bundle folder, and the digests read from it
    base: Path | None = None
    from_base: frozenset[str] = frozenset()

    @property
    def complete(self) -> bool:
        """Whether every blob of the release was checked: a full bundle, or a delta with its base."""
        return self.manifest.base is None or self.base is not None

    def blob(self, digest: str) -> Path:
        if self.base is not None and digest in self.from_base:
            return self.base / BLOBS / digest
        return self.path / BLOBS / digest


def check_signature(bundle: Path, keys: list[PublicKey]) -> tuple[Manifest, Verified]:
    """Verify manifest.json's signature and parse it. Raises SignatureError or BundleError."""
    raw = read_manifest_bytes(bundle)
    sig_path = bundle / SIGNATURE
    try:
        sig_text = sig_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SignatureError("the bundle is not signed (manifest.json.minisig is missing)", where=str(bundle),
                             hint="only signed bundles are accepted; sign it with `packager build --key`") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SignatureError(f"cannot read the signature: {exc}", where=str(sig_path)) from None
    verified = verify(raw, sig_text, keys, source=str(sig_path))
    return parse_manifest(raw, str(bundle / MANIFEST)), verified


def _logical_names(manifest: Manifest) -> dict[str, list[str]]:
    names: dict[str, list[str]] = defaultdict(list)
    for f in manifest.files:
        names[f.sha256].append(f.path)
    return names


def _scan(root: Path, expected: dict[str, int], problems: list[Problem]) -> dict[str, Path]:
    """Blobs present in the bundle; anything not listed in the manifest is a problem."""
    # extra files anywhere in the bundle are refused: nothing unsigned travels with it
    allowed_top = {MANIFEST, SIGNATURE, "blobs"}
    for entry in sorted(root.iterdir()):
        if entry.name not in allowed_top:
            problems.append(Problem(entry.name, "nothing (not listed in the manifest)", "an extra file"))
    blob_dir = root / BLOBS
    present: dict[str, Path] = {}
    if blob_dir.is_dir():
        for entry in sorted((root / "blobs").rglob("*")):
            rel = entry.relative_to(root).as_posix()
            if entry.is_dir() and rel in ("blobs/sha256",):
                continue
            if entry.parent != blob_dir or not entry.is_file() or entry.is_symlink():
                problems.append(Problem(rel, "nothing (not listed in the manifest)", "an extra entry"))
            elif entry.name not in expected:
                problems.append(Problem(rel, "nothing (not listed in the manifest)", "an extra blob"))
            else:
                present[entry.name] = entry
    elif expected:
        raise BundleError("the bundle has no blobs/sha256 folder", where=str(root))

    return present


def verify_bundle(bundle: Path | str, keys: list[PublicKey], *, jobs: int | None = None,
                  base: Path | str | None = None) -> VerifiedBundle:
    """Signature, then every blob: none missing, none extra, every size and sha256 as signed.

    A delta holds only some blobs: alone, those are checked; with ``base`` (the full bundle its signed
    reference names) the blobs it leaves to the base are checked there too, which covers the release."""
    root = Path(bundle)
    manifest, verified = check_signature(root, keys)
    expected = manifest.carried()
    base_root = open_base(manifest, base) if base is not None else None
    from_base = {d: s for d, s in manifest.blobs().items() if d not in expected} if base_root else {}
    names = _logical_names(manifest)
    problems: list[Problem] = []

    def label(digest: str) -> str:
        paths = names[digest]
        more = f" (+{len(paths) - 1} more paths)" if len(paths) > 1 else ""
        return f"{paths[0]}{more} [blob {digest[:12]}]"

    present = _scan(root, expected, problems)

    to_hash: list[Path] = []
    for digest, size in sorted({**expected, **from_base}.items()):
        if digest in from_base:
            assert base_root is not None
            bp = base_root / BLOBS / digest
            p = bp if bp.is_file() and not bp.is_symlink() else None
        else:
            p = present.get(digest)
        if p is None and base_root is not None:
            problems.append(Problem(label(digest), f"{size} bytes in the delta or in its base {base_root}",
                                    "missing from both"))
            continue
        if p is None:
            problems.append(Problem(label(digest), f"{size} bytes", "missing"))
            continue
        actual = p.stat().st_size
        if actual != size:
            problems.append(Problem(label(digest), f"{size} bytes", f"{actual} bytes"))
        else:
            to_hash.append(p)

    with Progress("verify", total=sum(p.stat().st_size for p in to_hash)) as prog:
        results = hash_many(to_hash, jobs=jobs, on_done=lambda _p, n: prog.update(n))
    for p, r in sorted(results.items()):
        if isinstance(r, OSError):
            problems.append(Problem(label(p.name), "a readable file", f"unreadable ({r.strerror})"))
        elif r[0] != p.name:
            problems.append(Problem(label(p.name), f"sha256 {p.name}", f"sha256 {r[0]}"))
    if problems:
        raise VerifyError(
            f"bundle does not match its signed manifest: {len(problems)} problem(s)",
            problems,
            where=str(root),
            hint="do not deploy it; copy the bundle again from the source medium",
        )
    return VerifiedBundle(root, manifest, verified, base_root, frozenset(from_base))
