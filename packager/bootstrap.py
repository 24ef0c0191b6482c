#!/usr/bin/env python3
"""Install the offline Airlock control node from a signed bundle. Standard library only: it runs before
anything is installed, so it is carried together with the public key (or taken from an earlier verified
install), never trusted just because it sits next to a bundle.

    python3 bootstrap.py BUNDLE --pubkey KEY.pub [--pubkey OLD.pub] [--dest /opt/airlock-controller]

In this order, and nothing from the bundle runs before step 2 succeeded:

1. reads the trusted minisign public key(s); without one it refuses;
2. verifies ``BUNDLE/manifest.json.minisig`` over ``manifest.json`` (pure-Python Ed25519, RFC 8032, prehashed
   ``ED`` form with BLAKE2b-512; signature and global signature over the trusted comment, as minisign does);
3. checks size and sha256 of every ``controller/*`` blob it uses against the verified manifest, and that this
   host's Python, architecture and glibc fit the controller's wheels;
4. writes ``DEST/releases/<name>-<version>-<manifest sha256[:12]>/`` with ``wheels/``, ``deploy/`` and a
   ``venv/`` made by ``python3 -m venv``, into which ALL controller wheels go with
   ``pip install --no-index --no-deps --isolated``, then ``pip check``;
5. switches ``DEST/current`` to that release in one rename (``DEST/venv``, ``DEST/deploy``, ``DEST/wheels``
   and ``DEST/bootstrap.py``, the verified copy for the next install, point through it), writes
   ``DEST/.airlock-controller.json`` last, keeps the previous release for rollback.

Running it again for the same bundle does nothing and says so. Exit codes: 0 done (or nothing to do),
2 usage, 6 bad key file, 7 bad signature or untrusted key, 8 a controller file differs from the signed
manifest, 9 malformed bundle, 10 this host cannot run the controller, 1 installation failed.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import fcntl
import hashlib
import importlib.util
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any

SCHEMA = "airlock.bundle/v1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.json.minisig"
BLOBS = "blobs/sha256"
MARKER = ".airlock-controller.json"
DEFAULT_DEST = "/opt/airlock-controller"
_CHUNK = 1 << 20
_LINKS = ("venv", "deploy", "wheels")


class BootstrapError(Exception):
    """A refusal or failure, with the exit code it maps to and a hint for the operator."""

    def __init__(self, message: str, code: int, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.hint = hint


def _say(msg: str) -> None:
    print(f"bootstrap: {msg}", file=sys.stderr, flush=True)


# --- Ed25519 verification, RFC 8032 section 5.1 (reference arithmetic) -------------------------------------

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)
Point = tuple[int, int, int, int]  # extended coordinates (X, Y, Z, T): x = X/Z, y = Y/Z, x*y = T/Z


def _add(p: Point, q: Point) -> Point:
    a = (p[1] - p[0]) * (q[1] - q[0]) % _P
    b = (p[1] + p[0]) * (q[1] + q[0]) % _P
    c = 2 * p[3] * q[3] * _D % _P
    d = 2 * p[2] * q[2] % _P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _mul(s: int, p: Point) -> Point:
    q: Point = (0, 1, 1, 0)  # the neutral element
    while s > 0:
        if s & 1:
            q = _add(q, p)
        p = _add(p, p)
        s >>= 1
    return q


def _equal(p: Point, q: Point) -> bool:
    return (p[0] * q[2] - q[0] * p[2]) % _P == 0 and (p[1] * q[2] - q[1] * p[2]) % _P == 0


def _recover_x(y: int, sign: int) -> int | None:
    if y >= _P:
        return None
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P != 0:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P != 0:
        return None
    if (x & 1) != sign:
        x = _P - x
    return x


def _decompress(s: bytes) -> Point | None:
    if len(s) != 32:
        return None
    y = int.from_bytes(s, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    x = _recover_x(y, sign)
    return None if x is None else (x, y, 1, x * y % _P)


_GY = 4 * pow(5, _P - 2, _P) % _P
_GX = 15112221349535400772501151409588531511454012693041857206046113283949847762202  # _recover_x(_GY, 0)
_G: Point = (_GX, _GY, 1, _GX * _GY % _P)


def ed25519_verify(public: bytes, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` is a valid Ed25519 signature of ``message`` by ``public`` (32 bytes)."""
    if len(public) != 32 or len(signature) != 64:
        return False
    a = _decompress(public)
    r = _decompress(signature[:32])
    if a is None or r is None:
        return False
    s = int.from_bytes(signature[32:], "little")
    if s >= _L:
        return False
    k = int.from_bytes(hashlib.sha512(signature[:32] + public + message).digest(), "little") % _L
    return _equal(_mul(s, _G), _add(r, _mul(k, a)))


# --- minisign ---------------------------------------------------------------------------------------------

PublicKey = tuple[bytes, bytes]  # (key id as stored: 8 bytes, Ed25519 public key: 32 bytes)


def _key_id_hex(key_id: bytes) -> str:
    return key_id[::-1].hex().upper()


def parse_public_key(text: str, source: str) -> PublicKey:
    """A minisign public key: the .pub file, or its bare base64 line."""
    stripped = text.strip()
    if stripped and "\n" not in stripped and not stripped.startswith("untrusted comment:"):
        text = "untrusted comment: \n" + stripped
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(lines) < 2 or not lines[0].startswith("untrusted comment:"):
        raise BootstrapError(f"{source}: not a minisign public key", 6)
    try:
        raw = base64.b64decode(lines[1].strip(), validate=True)
    except ValueError:
        raise BootstrapError(f"{source}: not a minisign public key (bad base64)", 6) from None
    if len(raw) != 42 or raw[:2] != b"Ed":
        raise BootstrapError(f"{source}: not a minisign Ed25519 public key (wrong length or algorithm)", 6,
                             "pass the .pub file; a .key file is the secret key and never leaves the build side")
    return raw[2:10], raw[10:42]


def load_public_keys(paths: list[str]) -> list[PublicKey]:
    keys = []
    for p in paths:
        try:
            text = Path(p).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise BootstrapError(f"{p}: cannot read the public key: {exc}", 6) from None
        keys.append(parse_public_key(text, p))
    return keys


def verify_minisign(data: bytes, signature_text: str, keys: list[PublicKey], source: str) -> tuple[str, str]:
    """Check a minisign signature of ``data`` exactly as packager.signing.verify does; return the signer's key
    id (hex) and the trusted comment. Raises BootstrapError (exit 7) on any failure."""
    if not keys:
        raise BootstrapError("no trusted public key given; refusing to install anything unverified", 7,
                             "pass --pubkey KEY.pub (the key carried separately from the bundle)")
    lines = signature_text.splitlines()
    if len(lines) < 4 or not lines[0].startswith("untrusted comment:") or not lines[2].startswith(
        "trusted comment: "
    ):
        raise BootstrapError(f"{source}: malformed minisign signature file", 7)
    try:
        raw = base64.b64decode(lines[1].strip(), validate=True)
        global_sig = base64.b64decode(lines[3].strip(), validate=True)
    except ValueError:
        raise BootstrapError(f"{source}: malformed minisign signature file (bad base64)", 7) from None
    if len(raw) != 74 or raw[:2] not in (b"Ed", b"ED") or len(global_sig) != 64:
        raise BootstrapError(f"{source}: unsupported or malformed signature", 7)
    alg, key_id, sig = raw[:2], raw[2:10], raw[10:]
    trusted = lines[2][len("trusted comment: ") :]
    matching = [k for k in keys if k[0] == key_id]
    if not matching:
        known = ", ".join(_key_id_hex(k[0]) for k in keys)
        raise BootstrapError(
            f"{source}: signed by key {_key_id_hex(key_id)}, which is not a trusted key (trusted: {known})", 7,
            "get the bundle's public key from its publisher through a separate channel")
    public = matching[0][1]
    message = hashlib.blake2b(data, digest_size=64).digest() if alg == b"ED" else data
    if not ed25519_verify(public, message, sig):
        raise BootstrapError(f"{source}: signature does not match manifest.json (key {_key_id_hex(key_id)}): "
                             "it was altered after signing", 7, "do not use this bundle; copy it again")
    if not ed25519_verify(public, sig + trusted.encode(), global_sig):
        raise BootstrapError(f"{source}: the trusted comment was altered after signing", 7)
    return _key_id_hex(key_id), trusted


# --- the verified manifest --------------------------------------------------------------------------------


def read_verified_manifest(bundle: Path, keys: list[PublicKey]) -> tuple[bytes, dict[str, Any], str]:
    """manifest.json's bytes, parsed content and signer, after its signature checked out."""
    if not (bundle / MANIFEST).is_file():
        raise BootstrapError(f"{bundle}: no {MANIFEST} here", 9, "pass the bundle folder (dist/<name>-<version>)")
    raw = (bundle / MANIFEST).read_bytes()
    try:
        sig_text = (bundle / SIGNATURE).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BootstrapError(f"{bundle}: the bundle is not signed ({SIGNATURE} is missing)", 7) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BootstrapError(f"{bundle / SIGNATURE}: cannot read the signature: {exc}", 7) from None
    signer, _ = verify_minisign(raw, sig_text, keys, str(bundle / SIGNATURE))
    try:
        manifest = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BootstrapError(f"{bundle / MANIFEST}: not valid JSON: {exc}", 9) from None
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA:
        raise BootstrapError(f"{bundle / MANIFEST}: unsupported manifest schema (this bootstrap reads {SCHEMA})", 9)
    return raw, manifest, signer


def _safe(path: str) -> bool:
    p = PurePosixPath(path)
    return bool(path) and not p.is_absolute() and ".." not in p.parts and "\\" not in path and str(p) == path


def controller_files(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The manifest's ``controller/wheels/*``, ``controller/deploy/**`` and ``controller/bootstrap.py`` entries,
    checked for shape."""
    out = []
    for f in manifest.get("files", []):
        path = f.get("path") if isinstance(f, dict) else None
        if not isinstance(path, str) or not (path.startswith(("controller/wheels/", "controller/deploy/"))
                                             or path == "controller/bootstrap.py"):
            continue
        sha, size = f.get("sha256"), f.get("size")
        if not _safe(path) or not isinstance(sha, str) or len(sha) != 64 or not isinstance(size, int):
            raise BootstrapError(f"manifest entry {path!r} is malformed", 9)
        if path.startswith("controller/wheels/") and ("/" in path[len("controller/wheels/") :]
                                                      or not path.endswith(".whl")):
            raise BootstrapError(f"manifest entry {path!r} is not a wheel", 9)
        out.append(f)
    if not any(f["path"].startswith("controller/wheels/") for f in out):
        raise BootstrapError("the bundle's controller carries no wheels", 9)
    return out


def refuse_delta_gaps(manifest: dict[str, Any], files: list[dict[str, Any]]) -> None:
    """A delta bundle leaves blobs to its base; the control node cannot be installed from such a gap."""
    base = manifest.get("base")
    if not isinstance(base, dict):
        return
    provided = set(base.get("provides") or [])
    gaps = [f["path"] for f in files if f["sha256"] in provided]
    if gaps:
        raise BootstrapError(
            f"this is a delta bundle over {base.get('name')}-{base.get('version')} and {len(gaps)} controller "
            f"file(s) are only in that base (e.g. {gaps[0]})", 9,
            "install the control node from the full bundle of this release (built without --base), or keep "
            "the control node installed from the base: it deploys this delta")


def _hash_file(path: Path) -> tuple[str, int]:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest(), f.tell()


def check_files(bundle: Path, files: list[dict[str, Any]]) -> None:
    """Every blob the controller uses has the signed size and sha256 (all problems named at once)."""
    problems = []
    for f in files:
        blob = bundle / BLOBS / f["sha256"]
        try:
            digest, size = _hash_file(blob)
        except OSError as exc:
            problems.append(f"{f['path']}: blob {f['sha256'][:12]} is unreadable ({exc.strerror})")
            continue
        if size != f["size"]:
            problems.append(f"{f['path']}: expected {f['size']} bytes, found {size} bytes")
        elif digest != f["sha256"]:
            problems.append(f"{f['path']}: expected sha256 {f['sha256']}, found {digest}")
    if problems:
        raise BootstrapError("the bundle's controller files do not match the signed manifest (tampered or damaged):"
                             "\n  - " + "\n  - ".join(problems), 8,
                             "do not use this bundle; copy it again from the source medium")


# --- this host --------------------------------------------------------------------------------------------


def _has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def check_host(ctrl: dict[str, Any]) -> None:
    """This Python, CPU and glibc can run the controller's wheels, and python3-venv is installed."""
    want = str(ctrl.get("python"))
    have = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if have != want:
        raise BootstrapError(
            f"the bundle's controller wheels are for Python {want}, but {sys.executable} is Python {have}", 10,
            f"run it with python{want} (apt-get install python{want} python{want}-venv), or rebuild the bundle "
            f'with controller.python: "{have}"')
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(platform.machine().lower(), platform.machine())
    if arch != ctrl.get("arch"):
        raise BootstrapError(f"the controller wheels are for {ctrl.get('arch')}, this machine is {arch}", 10,
                             "rebuild the bundle with controller.arch set to this machine's")
    libc, version = platform.libc_ver()
    need = (2, int(str(ctrl.get("manylinux", "2_17")).split("_")[1]))
    try:
        found = tuple(int(x) for x in version.split(".")[:2])
    except ValueError:
        found = ()
    if libc != "glibc" or found < need:
        raise BootstrapError(
            f"the controller wheels need glibc >= {need[0]}.{need[1]}; this machine has "
            f"{libc or 'an unknown libc'} {version}".rstrip(), 10,
            "rebuild the bundle with controller.manylinux set to this machine's glibc (ldd --version)")
    if not (_has_module("venv") and _has_module("ensurepip")):
        raise BootstrapError(f"{sys.executable} cannot make virtual environments (no venv/ensurepip module)", 10,
                             f"apt-get install python3-venv (or python{have}-venv) from the OS media")


# --- installing -------------------------------------------------------------------------------------------


def _installed(dest: Path, manifest_sha256: str) -> bool:
    try:
        info = json.loads((dest / MARKER).read_text(encoding="utf-8"))
        current = (dest / "current").resolve(strict=True)
    except (OSError, ValueError):
        return False
    return (isinstance(info, dict) and info.get("manifest_sha256") == manifest_sha256
            and current.name == info.get("release") and (current / MARKER).is_file()
            and all((dest / link).exists() for link in _LINKS))


def _check_dest(dest: Path) -> None:
    for name in (*_LINKS, "current", "bootstrap.py"):
        p = dest / name
        if (p.exists() or p.is_symlink()) and not p.is_symlink():
            raise BootstrapError(f"{p} exists and was not made by bootstrap.py; refusing to replace it", 1,
                                 "choose another --dest or move it away")


def _copy_checked(src: Path, dst: Path, entry: dict[str, Any]) -> None:
    """Copy while hashing: what lands on disk is what the manifest signed (no window between check and use)."""
    h = hashlib.sha256()
    n = 0
    dst.parent.mkdir(parents=True, exist_ok=True)
    with src.open("rb") as fi, dst.open("xb") as fo:
        while chunk := fi.read(_CHUNK):
            h.update(chunk)
            fo.write(chunk)
            n += len(chunk)
    if n != entry["size"] or h.hexdigest() != entry["sha256"]:
        raise BootstrapError(f"{entry['path']} changed while it was copied: it no longer matches the signed "
                             "manifest", 8)
    dst.chmod(0o644)


def _run(cmd: list[str], what: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON"))}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        said = "\n    ".join((proc.stderr + proc.stdout).strip().splitlines()[-30:])
        hint = None
        if what == "python3 -m venv":
            hint = "install python3-venv (apt-get install python3-venv) and run bootstrap.py again"
        raise BootstrapError(f"{what} failed (exit {proc.returncode}):\n    {said}", 1, hint)


def _point(link: Path, target: str) -> None:
    """Make ``link`` a symlink to ``target`` in one rename: it is the old target or the new one, never absent."""
    tmp = link.with_name(f".{link.name}.new-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    tmp.replace(link)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.new-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)


def build_release(bundle: Path, files: list[dict[str, Any]], release: Path, marker: dict[str, Any]) -> None:
    """Wheels, deploy tree and venv under ``release`` (its final path: a venv cannot move), marker last."""
    if release.exists():
        shutil.rmtree(release)  # an interrupted or superseded attempt: start clean
    release.mkdir(parents=True)
    wheels: list[Path] = []
    for f in files:
        rel = f["path"][len("controller/") :]
        dst = release / rel
        _copy_checked(bundle / BLOBS / f["sha256"], dst, f)
        if rel.startswith("wheels/"):
            wheels.append(dst)
    (release / "deploy").mkdir(exist_ok=True)
    _say(f"creating the venv with {sys.executable} -m venv")
    _run([sys.executable, "-m", "venv", str(release / "venv")], "python3 -m venv")
    py = str(release / "venv" / "bin" / "python")
    _say(f"installing {len(wheels)} wheels (--no-index --no-deps)")
    _run([py, "-I", "-m", "pip", "--isolated", "--disable-pip-version-check", "install", "--no-index", "--no-deps",
          "--no-input", "--quiet", *sorted(map(str, wheels))], "pip install")
    _run([py, "-I", "-m", "pip", "--isolated", "--disable-pip-version-check", "check"], "pip check")
    if any(w.name.startswith("airlock_packager-") for w in wheels):
        _run([py, "-I", "-c", "import packager.cli"], "importing the packager")
    _write_json(release / MARKER, marker)


def _prune(releases: Path, keep: set[str]) -> None:
    for entry in releases.iterdir():
        if entry.name not in keep and entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)


def install(bundle: Path, dest: Path, raw: bytes, manifest: dict[str, Any], *, files: list[dict[str, Any]],
            signer: str) -> None:
    msha = hashlib.sha256(raw).hexdigest()
    name, version = manifest["bundle"]["name"], manifest["bundle"]["version"]
    release_id = f"{name}-{version}-{msha[:12]}"
    releases = dest / "releases"
    try:
        previous: str | None = (dest / "current").resolve(strict=True).name
    except OSError:
        previous = None
    if release_id == previous:  # the live release lost its marker: rebuild beside it, never under it
        release_id += f".{os.getpid()}"
    release = releases / release_id
    marker = {
        "bundle": {"name": name, "version": version}, "manifest_sha256": msha, "release": release_id,
        "bundle_path": str(bundle), "signed_by": signer, "python": platform.python_version(),
        "wheels": sorted(PurePosixPath(f["path"]).name for f in files if f["path"].startswith("controller/wheels/")),
        "deploy_files": sum(f["path"].startswith("controller/deploy/") for f in files),
        "installed": dt.datetime.now(tz=dt.UTC).replace(microsecond=0).isoformat(),
    }
    try:
        build_release(bundle, files, release, marker)
    except BaseException:
        shutil.rmtree(release, ignore_errors=True)
        raise
    _point(dest / "current", f"releases/{release_id}")
    for link in (*_LINKS, "bootstrap.py"):
        if (release / link).exists():
            _point(dest / link, f"current/{link}")
    _write_json(dest / MARKER, marker)
    _prune(releases, {release_id, previous} if previous else {release_id})


def next_command(dest: Path, bundle: Path) -> str:
    return (f"cd {shlex.quote(str(dest / 'deploy'))} && ../venv/bin/ansible-playbook site.yml -i inventory/prod "
            f"-e bundle_src={shlex.quote(str(bundle))}")


def run(bundle: Path, dest: Path, pubkeys: list[str]) -> int:
    bundle, dest = bundle.absolute(), dest.absolute()
    if not pubkeys:
        raise BootstrapError("no trusted public key given; refusing to install anything unverified", 7,
                             "pass --pubkey KEY.pub (the key carried separately from the bundle)")
    keys = load_public_keys(pubkeys)
    raw, manifest, signer = read_verified_manifest(bundle, keys)
    bundle_id = f"{manifest.get('bundle', {}).get('name')} {manifest.get('bundle', {}).get('version')}"
    _say(f"signature of {bundle / MANIFEST} verified (key {signer}): {bundle_id}")
    ctrl = manifest.get("controller")
    if not isinstance(ctrl, dict):
        raise BootstrapError(f"{bundle}: this bundle carries no control node", 9,
                             "add a `controller:` section to the spec and build the bundle again")
    if _installed(dest, hashlib.sha256(raw).hexdigest()):
        _say(f"{bundle_id} is already installed in {dest}; nothing to do")
        print(next_command(dest, bundle))
        return 0
    check_host(ctrl)
    files = controller_files(manifest)
    refuse_delta_gaps(manifest, files)
    check_files(bundle, files)
    _say(f"{len(files)} controller files match the signed manifest")
    _check_dest(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with (dest / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _installed(dest, hashlib.sha256(raw).hexdigest()):  # another run finished it while we waited
            _say(f"{bundle_id} is already installed in {dest}; nothing to do")
        else:
            install(bundle, dest, raw, manifest, files=files, signer=signer)
            _say(f"installed {bundle_id} into {dest}")
    if not (dest / "deploy" / "site.yml").is_file():
        _say("note: the deploy tree has no site.yml")
    print(next_command(dest, bundle))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bootstrap.py", description=(
        "Verify a signed Airlock bundle and install its offline control node (ansible-core, ansible, the "
        "packager) and deploy tree under DEST. Nothing from the bundle runs before its signature is verified."))
    p.add_argument("bundle", metavar="BUNDLE", help="the bundle folder (holds manifest.json)")
    p.add_argument("--pubkey", action="append", default=[], metavar="KEY.pub",
                   help="trusted minisign public key, carried separately from the bundle; repeat for rotation")
    p.add_argument("--dest", default=DEFAULT_DEST, help=f"where to install (default {DEFAULT_DEST})")
    a = p.parse_args(argv)
    try:
        return run(Path(a.bundle), Path(a.dest), a.pubkey)
    except BootstrapError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"  hint: {exc.hint}", file=sys.stderr)
        return exc.code
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; the installed release (if any) is unchanged", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
