"""Delta bundles: only the blobs the base lacks, the signed manifest of the whole release, and a signed
reference to the base. Real small bundles from the real build pipeline (a local model, and a wheel through
a hand-made lock, so nothing is resolved or downloaded)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from packager.build import build
from packager.bundle.manifest import read_manifest
from packager.bundle.unpack import unpack
from packager.bundle.verify import verify_bundle
from packager.cache import Cache
from packager.errors import BundleError, SignatureError, VerifyError
from packager.lock import Lock, PythonLock, WheelLock, read_lock, write_lock
from packager.signing import generate_key, load_public_key, load_secret_key
from packager.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
TARGET = {"os": "debian12", "arch": "x86_64", "python": "3.12", "manylinux": "2_28", "cuda": None}
WEIGHTS = {1: os.urandom(200_000), 2: os.urandom(200_000)}
SHARD = os.urandom(150_000)  # a second model file that never changes
WHEELS = {"1.0": os.urandom(120_000), "1.1": os.urandom(120_000)}
OTHER_WHEEL = os.urandom(90_000)


def write_release(folder: Path, version: str, *, weights: int = 1, wheel: str = "1.0", name: str = "d") -> Path:
    """The spec folder of one release: a local model and two wheels pinned by a hand-made lock."""
    model = folder / "models" / "mine"
    (model / "sub").mkdir(parents=True, exist_ok=True)
    (model / "weights.bin").write_bytes(WEIGHTS[weights])
    (model / "shard-2.bin").write_bytes(SHARD)
    (model / "sub" / "tok.json").write_bytes(b'{"vocab": 3}\n')
    wdir = folder / "wheels"
    wdir.mkdir(exist_ok=True)
    files = {f"demo-{wheel}-py3-none-any.whl": WHEELS[wheel], "other-2.0-py3-none-any.whl": OTHER_WHEEL}
    for fn, data in files.items():
        (wdir / fn).write_bytes(data)
    spec_path = folder / "models.yaml"
    spec_path.write_text(yaml.safe_dump({
        "bundle": {"name": name, "version": version},
        "target": TARGET,
        "python": {"requirements": [f"demo=={wheel}", "other==2.0"]},
        "models": [{"name": "mine", "source": "local", "path": "./models/mine"}],
    }, sort_keys=False))
    sf = load_spec(spec_path)
    wheels = [WheelLock(name=fn.split("-")[0], version=fn.split("-")[1], filename=fn, url=(wdir / fn).as_uri(),
                        sha256=hashlib.sha256(data).hexdigest(), size=len(data)) for fn, data in files.items()]
    old = read_lock(sf.lock_path)
    write_lock(sf.lock_path, Lock(python=PythonLock(spec_digest=sf.spec.section_digest("python"), wheels=wheels,
                                                    resolver="test"), models=old.models if old else None))
    return spec_path


@pytest.fixture
def env(tmp_path: Path, keypair: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    monkeypatch.setenv("AIRLOCK_PROGRESS", "0")
    return {"tmp": tmp_path, "key": keypair[0], "pub": keypair[1], "spec": tmp_path / "spec",
            "cache": tmp_path / "cache"}


def do_build(e: dict[str, Path], spec: Path, out: str, base: Path | None = None) -> Path:
    return build(load_spec(spec), load_secret_key(e["key"]), e["tmp"] / out, Cache(e["cache"]), jobs=2, base=base,
                 base_keys=[load_public_key(e["pub"])] if base else None)


def cli(*args: str, cache: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, AIRLOCK_PROGRESS="0", SOURCE_DATE_EPOCH="1700000000")
    if cache is not None:
        env["AIRLOCK_CACHE"] = str(cache)
    return subprocess.run([sys.executable, "-m", "packager", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=300)


def blobs(bundle: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in (bundle / "blobs" / "sha256").iterdir()}


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def bundle_size(bundle: Path) -> int:
    return sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file())


def releases(e: dict[str, Path], **change: int | str) -> tuple[Path, Path, Path]:
    """Base 1.0.0, then 1.1.0 with one change, built full and as a delta of the base."""
    base = do_build(e, write_release(e["spec"], "1.0.0"), "base")
    spec = write_release(e["spec"], "1.1.0", **change)  # type: ignore[arg-type]
    return base, do_build(e, spec, "full"), do_build(e, spec, "delta", base=base)


def check_size_and_tree(e: dict[str, Path], base: Path, full: Path, delta: Path, changed_path: str) -> None:
    pub = [load_public_key(e["pub"])]
    dm = read_manifest(delta)
    # it carries exactly what the base lacks: the changed file, and the spec and lock (the version is in them)
    new = set(blobs(full)) - set(blobs(base))
    assert set(blobs(delta)) == new
    assert {f.path for f in dm.files if f.sha256 in new} == {changed_path, "meta/models.yaml", "meta/models.lock"}
    changed = sum(blobs(full)[d] for d in new)
    manifest = (delta / "manifest.json").stat().st_size
    assert bundle_size(delta) <= 1.05 * (changed + manifest), (bundle_size(delta), changed, manifest)
    assert bundle_size(delta) < bundle_size(full) / 2
    # the release it describes is the full bundle's, byte for byte, and unpacks to the same tree
    assert dm.full().dumps() == (full / "manifest.json").read_bytes()
    a = unpack(full, e["tmp"] / "rel-full", pub)
    b = unpack(delta, e["tmp"] / "rel-delta", pub, base=base)
    assert tree(a) == tree(b)
    assert len(tree(b)) == len(dm.files) + 1  # the files, and .airlock-manifest.json


def test_model_revision_delta(env: dict[str, Path]) -> None:
    base, full, delta = releases(env, weights=2)
    assert delta.name == "d-1.1.0-delta-from-1.0.0" and full.name == "d-1.1.0"
    check_size_and_tree(env, base, full, delta, "models/mine/weights.bin")


def test_wheel_version_delta_cli_with_a_bare_manifest_base(env: dict[str, Path]) -> None:
    e = env
    base = do_build(e, write_release(e["spec"], "1.0.0"), "base")
    spec = write_release(e["spec"], "1.1.0", wheel="1.1")
    full = do_build(e, spec, "full")
    # the builder keeps only the base's manifest (and signature), not its blobs
    kept = e["tmp"] / "kept"
    kept.mkdir()
    for n in ("manifest.json", "manifest.json.minisig"):
        shutil.copy(base / n, kept / n)
    r = cli("build", "--models", str(spec), "--key", str(e["key"]), "--out", str(e["tmp"] / "delta"),
            "--base", str(kept / "manifest.json"), "--base-pubkey", str(e["pub"]), cache=e["cache"])
    assert r.returncode == 0, r.stderr
    delta = Path(r.stdout.strip())
    assert "carries 3 of 7 blobs" in r.stderr
    check_size_and_tree(e, base, full, delta, "wheels/demo-1.1-py3-none-any.whl")

    # verify: alone, it checks what it carries and names the base; with the base, the complete release
    r = cli("verify", str(delta), "--pubkey", str(e["pub"]))
    assert r.returncode == 0, r.stderr
    digest = hashlib.sha256((base / "manifest.json").read_bytes()).hexdigest()
    assert "delta" in r.stdout and "the 3 blobs it carries verified" in r.stdout
    assert f"4 of the release's 7 blobs come from the base d 1.0.0 (manifest sha256 {digest})" in r.stdout
    r = cli("verify", str(delta), "--pubkey", str(e["pub"]), "--base", str(base))
    assert r.returncode == 0, r.stderr
    assert "complete release d 1.1.0 verified: 7 files in 7 blobs, 3 from the delta and 4 from the base" in r.stdout

    # inspect: the base and carried vs total size
    r = cli("inspect", str(delta), "--json", "--pubkey", str(e["pub"]))
    info = json.loads(r.stdout)
    d = info["delta"]
    assert d["base"] == {"name": "d", "version": "1.0.0", "manifest_sha256": digest}
    assert (d["carried_blobs"], d["base_blobs"]) == (3, 4)
    assert d["carried_size"] == sum(blobs(delta).values())
    assert d["carried_size"] + d["base_size"] == info["totals"]["stored_size"]
    r = cli("inspect", str(delta))
    assert f"delta    needs base d 1.0.0 (manifest sha256 {digest})" in r.stdout
    assert "in 3 blobs of" in r.stdout and "in 4 blobs come from the base" in r.stdout
    assert json.loads(cli("inspect", str(full), "--json").stdout)["delta"] is None

    # a signature that does not verify with --base-pubkey stops the build
    other = e["tmp"] / "other.pub"
    other.write_text(generate_key().public_key.to_text())
    r = cli("build", "--models", str(spec), "--key", str(e["key"]), "--out", str(e["tmp"] / "delta2"),
            "--base", str(kept / "manifest.json"), "--base-pubkey", str(other), cache=e["cache"])
    assert r.returncode == 7 and "not a trusted key" in r.stderr
    # without --base-pubkey it builds, and says the base's signature was not checked
    r = cli("build", "--models", str(spec), "--key", str(e["key"]), "--out", str(e["tmp"] / "delta3"),
            "--base", str(kept / "manifest.json"), cache=e["cache"])
    assert r.returncode == 0 and "signature not checked" in r.stderr


def test_base_must_be_an_older_release_of_the_same_bundle(env: dict[str, Path]) -> None:
    e = env
    base = do_build(e, write_release(e["spec"], "1.2.0"), "base")
    for version in ("1.2.0", "1.1.9"):
        with pytest.raises(BundleError, match=f"base version 1.2.0 is not older than this build's version {version}"):
            do_build(e, write_release(e["spec"], version, weights=2), "delta", base=base)
    with pytest.raises(BundleError, match=r"the base is bundle 'd' 1\.2\.0, this build is bundle 'other' 1\.3\.0"):
        do_build(e, write_release(e["spec"], "1.3.0", name="other"), "delta", base=base)
    with pytest.raises(BundleError, match=r"neither a bundle folder nor a manifest\.json") as ei:
        do_build(e, write_release(e["spec"], "1.3.0"), "delta", base=e["tmp"] / "nowhere")
    assert ei.value.hint and "--base" in ei.value.hint
    # 1.10 is newer than 1.9
    spec = write_release(e["spec"], "1.10.0", weights=2)
    delta = do_build(e, spec, "delta", base=base)
    # a delta is no base for another delta
    with pytest.raises(BundleError, match=r"the base d 1.10.0 is itself a delta \(of d 1.2.0\)"):
        do_build(e, write_release(e["spec"], "1.11.0"), "delta2", base=delta)
    assert not (e["tmp"] / "delta2").exists()


def test_unpack_and_verify_errors(env: dict[str, Path]) -> None:
    e = env
    pub = [load_public_key(e["pub"])]
    base, full, delta = releases(e, weights=2)
    digest = hashlib.sha256((base / "manifest.json").read_bytes()).hexdigest()

    # unpack without the base: what it needs, and the fix
    r = cli("unpack", str(delta), str(e["tmp"] / "rel"), "--pubkey", str(e["pub"]))
    assert r.returncode == 9, r.stderr
    assert f"needs the base bundle d 1.0.0 (manifest sha256 {digest})" in r.stderr
    assert "hint: pass --base PATH with the full bundle d-1.0.0" in r.stderr
    assert not (e["tmp"] / "rel").exists()

    # a base whose manifest differs: expected and found digests
    found = hashlib.sha256((full / "manifest.json").read_bytes()).hexdigest()
    for verb in ("verify", "unpack"):
        args = [str(delta), str(e["tmp"] / "rel")] if verb == "unpack" else [str(delta)]
        r = cli(verb, *args, "--pubkey", str(e["pub"]), "--base", str(full))
        assert r.returncode == 9, r.stderr
        assert f"its manifest.json has sha256 {found} (that is d 1.1.0), the delta expects {digest}" in r.stderr
    with pytest.raises(BundleError, match="is a full bundle, not a delta"):
        verify_bundle(full, pub, base=base)

    # a blob missing from both the delta and the base is named
    broken = e["tmp"] / "broken-base"
    shutil.copytree(base, broken)
    shard = next(f.sha256 for f in read_manifest(delta).files if f.path == "models/mine/shard-2.bin")
    (broken / "blobs" / "sha256" / shard).unlink()
    with pytest.raises(VerifyError) as ei:
        unpack(delta, e["tmp"] / "rel", pub, base=broken)
    (p,) = ei.value.problems
    assert p.path.startswith("models/mine/shard-2.bin") and p.found == "missing from both"
    assert not (e["tmp"] / "rel").exists()
    # a blob the base holds, changed: named too
    tok = next(f.sha256 for f in read_manifest(delta).files if f.path == "models/mine/sub/tok.json")
    t = broken / "blobs" / "sha256" / tok
    t.chmod(0o644)
    t.write_bytes(b'{"vocab": 4}\n')
    with pytest.raises(VerifyError) as ei:
        verify_bundle(delta, pub, base=broken)
    assert {q.path.split(" ")[0]: q.found.split(" ")[0] for q in ei.value.problems} == {
        "models/mine/shard-2.bin": "missing", "models/mine/sub/tok.json": "sha256"}


def test_tampered_delta_blob(env: dict[str, Path]) -> None:
    e = env
    base, _, delta = releases(e, weights=2)
    weights = next(f.sha256 for f in read_manifest(delta).files if f.path == "models/mine/weights.bin")
    blob = delta / "blobs" / "sha256" / weights
    blob.chmod(0o644)
    data = bytearray(blob.read_bytes())
    data[100] ^= 0xFF
    blob.write_bytes(bytes(data))
    for extra in ([], ["--base", str(base)]):
        r = cli("verify", str(delta), "--pubkey", str(e["pub"]), *extra)
        assert r.returncode == 8 and "models/mine/weights.bin" in r.stderr and "expected sha256" in r.stderr
    # a carried blob removed is missing, not silently taken from the base
    blob.unlink()
    with pytest.raises(VerifyError) as ei:
        verify_bundle(delta, [load_public_key(e["pub"])])
    assert [q.found for q in ei.value.problems] == ["missing"]


def test_signature_covers_the_base_reference(env: dict[str, Path]) -> None:
    e = env
    base, full, delta = releases(e, weights=2)
    pub = [load_public_key(e["pub"])]
    m = json.loads((delta / "manifest.json").read_text())
    edits: list[dict[str, Any]] = [
        {"manifest_sha256": hashlib.sha256(b"another").hexdigest()},
        {"version": "0.9.0"},
        {"provides": m["base"]["provides"][1:]},  # claim the base has fewer blobs
    ]
    raw = (delta / "manifest.json").read_bytes()
    for edit in edits:
        edited = json.loads(json.dumps(m))
        edited["base"].update(edit)
        (delta / "manifest.json").write_text(json.dumps(edited, indent=2, sort_keys=True) + "\n")
        with pytest.raises(SignatureError, match="altered after signing"):
            verify_bundle(delta, pub, base=base)
    # dropping the reference turns it into a "full" bundle: the signature breaks too
    del m["base"]
    (delta / "manifest.json").write_text(json.dumps(m, indent=2, sort_keys=True) + "\n")
    with pytest.raises(SignatureError, match="altered after signing"):
        verify_bundle(delta, pub)
    (delta / "manifest.json").write_bytes(raw)
    verify_bundle(delta, pub, base=base)
    assert b'"base"' not in (full / "manifest.json").read_bytes()  # full bundles hash as before
