"""Bundles: assemble, verify, inspect, unpack; every kind of tampering is caught and named."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from packager.bundle.assemble import assemble
from packager.bundle.manifest import FileEntry, Manifest, ModelEntry, PackageEntry, Provenance
from packager.bundle.unpack import RELEASE_MARKER, unpack
from packager.bundle.verify import verify_bundle
from packager.cache import Cache
from packager.errors import BundleError, SignatureError, VerifyError
from packager.signing import generate_key, load_public_key, load_secret_key

FILES = {
    "wheels/six-1.16.0-py2.py3-none-any.whl": b"wheel bytes" * 100,
    "models/a/config.json": b'{"hidden": 64}',
    "models/a/weights.bin": os.urandom(300_000),
    "models/b/config.json": b'{"hidden": 64}',  # same content as models/a/config.json: stored once
    "models/b/sub/dir/tok.json": b"{}",
}


def make_bundle(tmp_path: Path, keypair: tuple[Path, Path], files: dict[str, bytes] = FILES,
                out: Path | None = None) -> Path:
    cache = Cache(tmp_path / "cache")
    entries = [FileEntry(path=p, sha256=cache.put_bytes(b), size=len(b)) for p, b in sorted(files.items())]
    m = Manifest(
        bundle={"name": "t", "version": "1.0.0"},
        target={"os": "debian12", "arch": "x86_64", "python": "3.12", "manylinux": "2_28", "cuda": None},
        provenance=Provenance(packager_version="0", spec_sha256="0" * 64, lock_sha256="1" * 64,
                              created="2024-01-01T00:00:00Z"),
        packages=[PackageEntry(name="six", version="1.16.0", file="wheels/six-1.16.0-py2.py3-none-any.whl")],
        models=[ModelEntry(name="a", source="local", repo="/x", root="models/a", files=2, size=300_014)],
        files=entries,
    )
    return assemble(m, cache, out or tmp_path / "dist", load_secret_key(keypair[0]))


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "packager", *args], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1])


def test_layout_dedup_and_verify(tmp_path: Path, keypair: tuple[Path, Path]) -> None:
    b = make_bundle(tmp_path, keypair)
    assert b.name == "t-1.0.0"
    assert sorted(p.name for p in b.iterdir()) == ["blobs", "manifest.json", "manifest.json.minisig"]
    assert len(list((b / "blobs" / "sha256").iterdir())) == 4  # 5 files, one duplicate
    vb = verify_bundle(b, [load_public_key(keypair[1])])
    assert len(vb.manifest.files) == 5
    r = cli("verify", str(b), "--pubkey", str(keypair[1]))
    assert r.returncode == 0, r.stderr
    assert "5 files in 4 blobs verified" in r.stdout


def test_minisign_checks_a_bundle(tmp_path: Path, keypair: tuple[Path, Path]) -> None:
    if shutil.which("minisign") is None:
        pytest.skip("minisign not installed")
    b = make_bundle(tmp_path, keypair)
    r = subprocess.run(["minisign", "-Vm", str(b / "manifest.json"), "-p", str(keypair[1])], capture_output=True)
    assert r.returncode == 0


def _blob_of(b: Path, logical: str) -> Path:
    m = json.loads((b / "manifest.json").read_text())
    digest = next(f["sha256"] for f in m["files"] if f["path"] == logical)
    return b / "blobs" / "sha256" / digest


def test_tampered_blob_is_named(tmp_path: Path, keypair: tuple[Path, Path]) -> None:
    b = make_bundle(tmp_path, keypair)
    blob = _blob_of(b, "models/a/weights.bin")
    blob.chmod(0o644)
    data = bytearray(blob.read_bytes())
    data[1000] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(VerifyError) as ei:
        verify_bundle(b, [load_public_key(keypair[1])])
    text = str(ei.value)
    assert "models/a/weights.bin" in text and "expected sha256" in text
    r = cli("verify", str(b), "--pubkey", str(keypair[1]))
    assert r.returncode == 8 and "models/a/weights.bin" in r.stderr


def test_missing_extra_truncated(tmp_path: Path, keypair: tuple[Path, Path]) -> None:
    b = make_bundle(tmp_path, keypair)
    _blob_of(b, "wheels/six-1.16.0-py2.py3-none-any.whl").unlink()
    trunc = _blob_of(b, "models/a/weights.bin")
    trunc.chmod(0o644)
    with trunc.open("r+b") as f:
        f.truncate(100)
    (b / "blobs" / "sha256" / ("0" * 64)).write_bytes(b"smuggled")
    (b / "README.txt").write_text("unsigned")
    with pytest.raises(VerifyError) as ei:
        verify_bundle(b, [load_public_key(keypair[1])])
    problems = {p.path.split(" ")[0]: p for p in ei.value.problems}
    assert problems["wheels/six-1.16.0-py2.py3-none-any.whl"].found == "missing"
    assert problems["models/a/weights.bin"].found == "100 bytes"
    assert problems["README.txt"].found == "an extra file"
    assert problems[f"blobs/sha256/{'0' * 64}"].found == "an extra blob"


def test_manifest_edited_after_signing(tmp_path: Path, keypair: tuple[Path, Path]) -> None:
    b = make_bundle(tmp_path, keypair)
    m = json.loads((b / "manifest.json").read_text())
    m["bundle"]["version"] = "9.9.9"
    (b / "manifest.json").write_text(json.dumps(m, indent=2, sort_keys=True))
    with pytest.raises(SignatureError, match="altered after signing"):
        verify_bundle(b, [load_public_key(keypair[1])])


def test_wrong_key_and_unsigned(tmp_path: Path, keypair: tuple[Path, Path]) -> None:
    b = make_bundle(tmp_path, keypair)
    other = tmp_path / "other.pub"
    other.write_text(generate_key().public_key.to_text())
    r = cli("verify", str(b), "--pubkey", str(other))
    assert r.returncode == 7 and "not a trusted key" in r.stderr
    r = cli("verify", str(b))
    assert r.returncode != 0 and "--pubkey" in r.stderr
    (b / "manifest.json.minisig").unlink()
    with pytest.raises(SignatureError, match="not signed"):
        verify_bundle(b, [load_public_key(keypair[1])])


def test_unpack_is_complete_and_atomic(tmp_path: Path, keypair: tuple[Path, Path]) -> None:
    b = make_bundle(tmp_path, keypair)
    pub = [load_public_key(keypair[1])]
    dest = unpack(b, tmp_path / "release", pub)
    for logical, data in FILES.items():
        assert (dest / logical).read_bytes() == data
    assert json.loads((dest / RELEASE_MARKER).read_text())["bundle"]["version"] == "1.0.0"
    with pytest.raises(BundleError, match="not empty"):
        unpack(b, dest, pub)
    # a bundle that fails verification leaves no destination at all
    _blob_of(b, "models/b/sub/dir/tok.json").unlink()
    with pytest.raises(VerifyError):
        unpack(b, tmp_path / "release2", pub)
    assert not (tmp_path / "release2").exists()
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]


def test_unpack_interrupted_leaves_no_tree(tmp_path: Path, keypair: tuple[Path, Path],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    b = make_bundle(tmp_path, keypair)
    import packager.bundle.unpack as up

    calls = {"n": 0}
    real = up.link_or_copy

    def failing(src: Path, dst: Path) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "No space left on device")
        real(src, dst)

    monkeypatch.setattr(up, "link_or_copy", failing)
    with pytest.raises(BundleError, match="disk full"):
        unpack(b, tmp_path / "rel", [load_public_key(keypair[1])])
    assert not (tmp_path / "rel").exists()
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]


def test_rebuild_replaces_atomically_and_is_byte_identical(tmp_path: Path, keypair: tuple[Path, Path],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    b1 = make_bundle(tmp_path, keypair)
    first = (b1 / "manifest.json").read_bytes(), (b1 / "manifest.json.minisig").read_bytes()
    b2 = make_bundle(tmp_path, keypair)
    assert b1 == b2
    assert ((b2 / "manifest.json").read_bytes(), (b2 / "manifest.json.minisig").read_bytes()) == first
    assert sorted(p.name for p in (tmp_path / "dist").iterdir()) == ["t-1.0.0"]


def test_inspect(tmp_path: Path, keypair: tuple[Path, Path]) -> None:
    b = make_bundle(tmp_path, keypair)
    r = cli("inspect", str(b), "--json", "--pubkey", str(keypair[1]))
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["packages"][0]["name"] == "six"
    assert info["totals"] == {"files": 5, "blobs": 4, "logical_size": sum(map(len, FILES.values())),
                              "stored_size": sum(map(len, FILES.values())) - len(b'{"hidden": 64}')}
    assert info["signature"]["checked"] is True
    r = cli("inspect", str(b))
    assert r.returncode == 0 and "NOT CHECKED" in r.stdout and "six" in r.stdout


def test_unsafe_logical_path_rejected() -> None:
    with pytest.raises(ValueError, match="unsafe"):
        FileEntry(path="../etc/passwd", sha256="0" * 64, size=1)
    with pytest.raises(ValueError, match="unsafe"):
        FileEntry(path="/etc/passwd", sha256="0" * 64, size=1)


def test_cache_sweeps_only_stale_scratch(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "c")
    old_dir = cache.root / "tmp" / "models.abc"
    old_dir.mkdir()
    (old_dir / "x.incomplete").write_bytes(b"half")
    old_file = cache.root / "tmp" / "f.part"
    old_file.write_bytes(b"partial")
    fresh = cache.root / "tmp" / "g.part"
    fresh.write_bytes(b"partial")
    for p in (old_dir, old_file):
        os.utime(p, (0, 0))
    Cache(tmp_path / "c")
    assert not old_dir.exists() and not old_file.exists() and fresh.exists()


def test_disk_full_while_writing_the_bundle(tmp_path: Path, keypair: tuple[Path, Path]) -> None:
    """A real full disk: a 128 KiB tmpfs as the output folder (the cache is on another filesystem, so
    every blob is copied). The error says so, and nothing is left in the output folder."""
    out = tmp_path / "small-disk"
    out.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", str(out)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root")
    try:
        with pytest.raises(BundleError, match="disk full while writing the bundle"):
            make_bundle(tmp_path, keypair, out=out)
        assert list(out.iterdir()) == []
    finally:
        subprocess.run(["umount", str(out)], check=True)
