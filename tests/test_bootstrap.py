"""The offline control node: bootstrap.py's pure-Python Ed25519/minisign check, the controller spec and lock,
and the whole path: build a bundle with a controller, then install it with the network cut.

Real parts: signatures from ``cryptography`` (packager.signing) and from Debian's ``minisign``; wheels resolved
from the package index for the controller; ``uv build`` of the packager; ``python3 -m venv`` and pip with
``--no-index`` inside ``unshare -n`` (no network namespace at all).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from packager import bootstrap
from packager.bootstrap import BootstrapError, ed25519_verify, verify_minisign
from packager.controller import DEFAULT_ANSIBLE, controller_digest, controller_requirements, deploy_tree
from packager.errors import SpecError
from packager.lock import Lock
from packager.signing import generate_key, sign
from packager.spec import parse_spec

ROOT = Path(__file__).resolve().parents[1]


def _raw_public(priv: Ed25519PrivateKey) -> bytes:
    return priv.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _crypto_ok(public: bytes, message: bytes, sig: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(sig, message)
    except InvalidSignature:
        return False
    return True


def test_bootstrap_imports_only_the_standard_library() -> None:
    import ast

    tree = ast.parse(Path(bootstrap.__file__).read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert names - {"__future__"} <= sys.stdlib_module_names, names - sys.stdlib_module_names


# --- Ed25519 --------------------------------------------------------------------------------------------


def test_rfc8032_test_vector_1() -> None:
    public = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    sig = bytes.fromhex("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
                        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")
    assert ed25519_verify(public, b"", sig)
    assert not ed25519_verify(public, b"x", sig)


def test_ed25519_agrees_with_cryptography() -> None:
    for n in (0, 1, 64, 1000, 4096):
        priv = Ed25519PrivateKey.generate()
        public = _raw_public(priv)
        message = os.urandom(n)
        sig = priv.sign(message)
        assert ed25519_verify(public, message, sig) is True is _crypto_ok(public, message, sig)
        cases = [
            (public, message + b"!", sig),  # another message
            (public, message, sig[:10] + bytes([sig[10] ^ 1]) + sig[11:]),  # R altered
            (public, message, sig[:40] + bytes([sig[40] ^ 0x80]) + sig[41:]),  # S altered
            (_raw_public(Ed25519PrivateKey.generate()), message, sig),  # another key
        ]
        for pub, msg, s in cases:
            assert ed25519_verify(pub, msg, s) is False is _crypto_ok(pub, msg, s)
    # S >= L (a malleated signature) is refused, as by libsodium and OpenSSL
    priv = Ed25519PrivateKey.generate()
    sig = priv.sign(b"m")
    s = int.from_bytes(sig[32:], "little") + bootstrap._L
    malleated = sig[:32] + s.to_bytes(32, "little")
    assert not ed25519_verify(_raw_public(priv), b"m", malleated)
    assert not _crypto_ok(_raw_public(priv), b"m", malleated)


def test_minisign_check_agrees_with_packager_signing() -> None:
    key = generate_key()
    keys = [(key.key_id, key.public)]
    for n in (0, 7, 3000):
        data = os.urandom(n)
        sig = sign(data, key, file_name="manifest.json", timestamp=1700000000)
        signer, trusted = verify_minisign(data, sig, keys, "sig")
        assert signer == key.public_key.key_id_hex
        assert trusted == "timestamp:1700000000\tfile:manifest.json\thashed"
        with pytest.raises(BootstrapError, match="altered after signing") as e:
            verify_minisign(data + b"x", sig, keys, "sig")
        assert e.value.code == 7
        forged = sig.replace("timestamp:1700000000", "timestamp:1800000000")
        with pytest.raises(BootstrapError, match="trusted comment was altered"):
            verify_minisign(data, forged, keys, "sig")
    other = generate_key()
    with pytest.raises(BootstrapError, match="not a trusted key"):
        verify_minisign(b"d", sign(b"d", key, file_name="f"), [(other.key_id, other.public)], "sig")
    with pytest.raises(BootstrapError, match="no trusted public key"):
        verify_minisign(b"d", sign(b"d", key, file_name="f"), [], "sig")


@pytest.mark.skipif(shutil.which("minisign") is None, reason="minisign is not installed")
def test_minisign_cli_signatures(tmp_path: Path) -> None:
    pub, sec = tmp_path / "m.pub", tmp_path / "m.key"
    subprocess.run(["minisign", "-G", "-W", "-p", str(pub), "-s", str(sec)], check=True, capture_output=True)
    keys = bootstrap.load_public_keys([str(pub)])
    assert keys == [bootstrap.parse_public_key(pub.read_text().splitlines()[1], "bare base64 line")]
    # minisign prehashes (ED) by default; -l makes the legacy, whole-message form (Ed)
    for i, (extra, alg) in enumerate((([], b"ED"), (["-t", "a trusted comment"], b"ED"), (["-l"], b"Ed"))):
        data = tmp_path / f"file{i}"
        data.write_bytes(os.urandom(1234 * (i + 1)))
        subprocess.run(["minisign", "-S", "-s", str(sec), "-m", str(data), *extra], check=True,
                       capture_output=True, input=b"")
        sig = (tmp_path / f"file{i}.minisig").read_text()
        assert base64.b64decode(sig.splitlines()[1])[:2] == alg
        _, trusted = verify_minisign(data.read_bytes(), sig, keys, "minisig")
        if extra[:1] == ["-t"]:
            assert trusted == "a trusted comment"
        with pytest.raises(BootstrapError, match="altered"):
            verify_minisign(data.read_bytes()[:-1], sig, keys, "minisig")


# --- spec, lock, deploy tree ----------------------------------------------------------------------------

SPEC = """\
bundle: {name: c, version: "1"}
target: {python: "3.12", manylinux: "2_28"}
"""


def test_controller_section_defaults_and_errors() -> None:
    s = parse_spec(SPEC)
    assert s.controller is None and s.controller_target is None
    s = parse_spec(SPEC + "controller: {}\n")
    ct = s.controller_target
    assert ct is not None and (ct.python, ct.manylinux, ct.arch, ct.cuda) == ("3.12", "2_28", "x86_64", None)
    s2 = parse_spec(SPEC + 'controller: {python: "3.11", manylinux: "2_36", requirements: ["rich"]}\n')
    assert s2.controller_target is not None and s2.controller_target.python == "3.11"
    reqs = controller_requirements(s2, ROOT)
    assert reqs[: len(DEFAULT_ANSIBLE)] == list(DEFAULT_ANSIBLE) and reqs[-1] == "rich"
    names = {r.split(">")[0].split("<")[0].split("=")[0].lower() for r in reqs}
    assert {"pydantic", "pyyaml", "cryptography", "packaging"} <= names
    assert not names & {"uv", "httpx", "huggingface_hub", "modelscope", "tqdm"}
    off = parse_spec(SPEC + "controller: {defaults: false}\n")
    assert not set(DEFAULT_ANSIBLE) & set(controller_requirements(off, ROOT))
    # the digest follows what resolution depends on, and only that
    assert controller_digest(s2, reqs) == controller_digest(parse_spec(SPEC.replace('"1"', '"2"') + (
        'controller: {python: "3.11", manylinux: "2_36", requirements: ["rich"]}\n')), reqs)
    assert controller_digest(s2, reqs) != controller_digest(s2, [*reqs, "six"])
    for bad, msg in (("controller: {python: 3.11}", "quoted string"),
                     ('controller: {python: "3.10"}', "too old"),
                     ("controller: {pyhton: '3.11'}", "unknown key"),
                     ("controller: {requirements: ['not a req !!']}", "PEP 508")):
        with pytest.raises(SpecError, match=msg) as e:
            parse_spec(SPEC + bad + "\n", "m.yaml")
        assert "m.yaml:3" in str(e.value)
    with pytest.raises(SpecError, match=r"defaults to target\.python"):
        parse_spec(SPEC.replace('"3.12"', '"3.10"') + "controller: {}\n")


def test_lock_without_controller_keeps_its_shape() -> None:
    assert "controller" not in json.loads(Lock().dumps())


def test_deploy_tree_leaves_caches_and_keys_out(tmp_path: Path) -> None:
    files = ["site.yml", "README.md", "roles/r/tasks/main.yml", "roles/r/__pycache__/x.pyc", "roles/r/lib/m.pyc",
             "roles/r/.molecule/state.yml", "inventory/prod/hosts.yml", "inventory/signing.key", "docs/a.md",
             "playbooks/p.yml", "services/s/unit.service", "packager/not_deploy.py", "tests/t.py"]
    for rel in files:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(rel)
    got = [rel for rel, _ in deploy_tree(tmp_path)]
    assert got == sorted(["site.yml", "README.md", "roles/r/tasks/main.yml", "inventory/prod/hosts.yml",
                          "docs/a.md", "playbooks/p.yml", "services/s/unit.service"])


def test_host_checks_name_the_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    ctrl = {"python": here, "arch": "x86_64", "manylinux": "2_17"}
    if os.uname().machine != "x86_64":
        ctrl["arch"] = os.uname().machine
    bootstrap.check_host(ctrl)
    with pytest.raises(BootstrapError, match=r"wheels are for Python 3\.99") as e:
        bootstrap.check_host({**ctrl, "python": "3.99"})
    assert e.value.code == 10
    with pytest.raises(BootstrapError, match=r"glibc >= 2\.99"):
        bootstrap.check_host({**ctrl, "manylinux": "2_99"})
    monkeypatch.setattr(bootstrap, "_has_module", lambda name: name != "ensurepip")
    with pytest.raises(BootstrapError, match="cannot make virtual environments") as e:
        bootstrap.check_host(ctrl)
    assert e.value.hint is not None and "python3-venv" in e.value.hint


_BLOCKER = textwrap.dedent("""
    import sys
    BLOCKED = {"httpx", "tqdm", "uv", "huggingface_hub", "modelscope", "requests", "yaml"}
    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{name} is blocked: the control node does not have it")
    sys.meta_path.insert(0, Block())
    from packager.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def test_verify_inspect_unpack_need_only_the_core_dependencies(tmp_path: Path, keypair: tuple[Path, Path]) -> None:
    """With uv, httpx, tqdm, the hub clients (and even PyYAML) unimportable, the offline commands still work."""
    from tests.test_bundle import make_bundle

    bundle = make_bundle(tmp_path, keypair)
    env = {**os.environ, "AIRLOCK_PROGRESS": "1"}  # would import tqdm if it could
    for args in (["verify", str(bundle), "--pubkey", str(keypair[1])],
                 ["inspect", str(bundle), "--pubkey", str(keypair[1])],
                 ["unpack", str(bundle), str(tmp_path / "out"), "--pubkey", str(keypair[1])]):
        r = subprocess.run([sys.executable, "-c", _BLOCKER, *args], capture_output=True, text=True, env=env,
                           cwd=ROOT, timeout=120)
        assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-c", _BLOCKER, "build", "--models", "x.yaml", "--key", "k"],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert r.returncode == 1 and "airlock-packager[build]" in r.stderr


# --- the whole path -------------------------------------------------------------------------------------


def _plain_python() -> Path | None:
    """A system Python >= 3.11 that can make venvs (Debian's /usr/bin/python3 first), as an operator has."""
    for cand in (Path("/usr/bin/python3"), Path(sys.base_prefix) / "bin" / "python3"):
        if not cand.is_file():
            continue
        r = subprocess.run([str(cand), "-I", "-c", "import sys, venv, ensurepip; assert sys.version_info >= (3, 11)"],
                           capture_output=True, text=True, check=False)
        if r.returncode == 0:
            return cand
    return None


def _offline(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run with no network at all: a fresh network namespace holds only a down loopback."""
    return subprocess.run(["unshare", "-n", *cmd], capture_output=True, text=True, timeout=600, **kw)


def _blob_of(bundle: Path, logical: str) -> Path:
    m = json.loads((bundle / "manifest.json").read_text())
    return bundle / "blobs" / "sha256" / next(f["sha256"] for f in m["files"] if f["path"] == logical)


@pytest.mark.network
@pytest.mark.slow
def test_build_then_bootstrap_offline(tmp_path: Path, keypair: tuple[Path, Path]) -> None:
    py = _plain_python()
    if py is None:
        pytest.skip("no system python3 >= 3.11 with venv/ensurepip")
    if subprocess.run(["unshare", "-n", "true"], capture_output=True, check=False).returncode != 0:
        pytest.skip("unshare -n is not permitted here (needs root or user namespaces)")
    version = subprocess.run([str(py), "-c", "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')"],
                             capture_output=True, text=True, check=True).stdout.strip()
    spec = {
        "bundle": {"name": "ctl", "version": "1.0.0"},
        "target": {"python": "3.12", "manylinux": "2_28"},
        "python": {"requirements": ["six==1.16.0"]},
        # the packager and its runtime dependencies always come; ansible-core alone keeps the test quick
        "controller": {"python": version, "manylinux": "2_28", "defaults": False,
                       "requirements": ["ansible-core==2.19.14"]},
    }
    spec_path = tmp_path / "spec" / "models.yaml"
    spec_path.parent.mkdir()
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env.update(AIRLOCK_CACHE=str(tmp_path / "cache"), SOURCE_DATE_EPOCH="1700000000", AIRLOCK_PROGRESS="0")
    key, pub = keypair
    build = [sys.executable, "-m", "packager", "build", "--models", str(spec_path), "--key", str(key),
             "--out", str(tmp_path / "dist")]
    r = subprocess.run(build, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr
    bundle = tmp_path / "dist" / "ctl-1.0.0"
    first = (bundle / "manifest.json").read_bytes()
    manifest = json.loads(first)
    lock = json.loads(spec_path.with_suffix(".lock").read_text())
    assert {w["name"] for w in lock["controller"]["wheels"]} >= {"ansible-core", "pydantic", "cryptography"}
    assert not {w["name"] for w in lock["controller"]["wheels"]} & {"uv", "httpx", "tqdm", "modelscope"}
    ctrl = manifest["controller"]
    assert ctrl["python"] == version and ctrl["ansible_core"] == "2.19.14"
    assert ctrl["wheels"] == len(lock["controller"]["wheels"]) + 1
    paths = {f["path"] for f in manifest["files"]}
    assert ctrl["packager"] in paths and "controller/deploy/README.md" in paths
    assert ("controller/deploy/site.yml" in paths) == (ROOT / "site.yml").is_file()
    assert not [p for p in paths if p.endswith((".pyc", ".key")) or "__pycache__" in p]
    assert _blob_of(bundle, "controller/bootstrap.py").read_bytes() == Path(bootstrap.__file__).read_bytes()

    # an unchanged spec resolves nothing again, and the packager's wheel is the same bytes
    r2 = subprocess.run(build, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert r2.returncode == 0, r2.stderr
    assert "controller section unchanged" in r2.stderr
    assert (bundle / "manifest.json").read_bytes() == first

    # the operator's side: bootstrap.py (as carried with the key) with the network cut
    boot = tmp_path / "carried" / "bootstrap.py"
    boot.parent.mkdir()
    shutil.copyfile(_blob_of(bundle, "controller/bootstrap.py"), boot)
    dest = tmp_path / "controller"
    r = _offline([str(py), "-I", "-S", str(boot), str(bundle), "--pubkey", str(pub), "--dest", str(dest)])
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == (f"cd {dest}/deploy && ../venv/bin/ansible-playbook site.yml -i inventory/prod "
                                f"-e bundle_src={bundle}")
    vpy = dest / "venv" / "bin" / "python"
    v = _offline([str(vpy), "-m", "packager", "verify", str(bundle), "--pubkey", str(pub)],
                 env={**env, "AIRLOCK_PROGRESS": "1"})
    assert v.returncode == 0, v.stderr
    assert "OK: ctl-1.0.0" in v.stdout
    i = _offline([str(vpy), "-m", "packager", "inspect", str(bundle), "--json"])
    assert i.returncode == 0 and json.loads(i.stdout)["controller"]["ansible_core"] == "2.19.14"
    for absent in ("uv", "httpx", "tqdm", "huggingface_hub"):
        assert _offline([str(vpy), "-c", f"import {absent}"]).returncode != 0, absent
    a = _offline([str(dest / "venv" / "bin" / "ansible-playbook"), "--version"],
                 env={**env, "LC_ALL": "C.UTF-8"})
    assert a.returncode == 0 and "2.19.14" in a.stdout, a.stderr
    assert (dest / "deploy" / "roles").is_dir() == (ROOT / "roles").is_dir()
    assert (dest / "deploy" / "site.yml").is_file() == (ROOT / "site.yml").is_file()
    assert (dest / "deploy" / "README.md").read_bytes() == (ROOT / "README.md").read_bytes()
    assert (dest / "bootstrap.py").read_bytes() == boot.read_bytes()
    wheel_names = sorted(p.name for p in (dest / "wheels").iterdir())
    assert len(wheel_names) == ctrl["wheels"]
    marker = json.loads((dest / ".airlock-controller.json").read_text())
    assert marker["manifest_sha256"] == hashlib.sha256((bundle / "manifest.json").read_bytes()).hexdigest()
    assert marker["bundle"] == {"name": "ctl", "version": "1.0.0"}

    # a rerun for the same bundle does nothing and says so
    venv_inode = (dest / "venv").resolve().stat().st_ino
    r = _offline([str(py), "-I", "-S", str(boot), str(bundle), "--pubkey", str(pub), "--dest", str(dest)])
    assert r.returncode == 0 and "already installed" in r.stderr and "nothing to do" in r.stderr, r.stderr
    assert (dest / "venv").resolve().stat().st_ino == venv_inode

    # a wrong key: refused before anything is written
    other = tmp_path / "other"
    subprocess.run([sys.executable, "-m", "packager", "keygen", "--out", str(other)], check=True,
                   capture_output=True, env=env)
    d2 = tmp_path / "d2"
    r = _offline([str(py), "-I", "-S", str(boot), str(bundle), "--pubkey", f"{other}.pub", "--dest", str(d2)])
    assert r.returncode == 7 and "not a trusted key" in r.stderr, r.stderr
    assert not d2.exists()
    r = _offline([str(py), "-I", "-S", str(boot), str(bundle), "--dest", str(d2)])
    assert r.returncode == 7 and "refusing" in r.stderr and not d2.exists()

    # a tampered controller wheel: named, refused, nothing installed
    tampered = tmp_path / "tampered"
    shutil.copytree(bundle, tampered)  # copies, so the cache's blobs stay intact
    core = next(p for p in paths if p.startswith("controller/wheels/ansible_core-"))
    blob = _blob_of(tampered, core)
    blob.chmod(0o644)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    r = _offline([str(py), "-I", "-S", str(boot), str(tampered), "--pubkey", str(pub), "--dest", str(d2)])
    assert r.returncode == 8 and core in r.stderr and "do not match the signed manifest" in r.stderr, r.stderr
    assert not (d2 / "venv").exists()


def test_a_delta_whose_controller_files_are_in_its_base_is_refused_by_name() -> None:
    wheel = {"path": "controller/wheels/a-1-py3-none-any.whl", "sha256": "a" * 64, "size": 1}
    boot = {"path": "controller/bootstrap.py", "sha256": "b" * 64, "size": 2}
    manifest: dict[str, Any] = {"files": [wheel, boot],
                                "base": {"name": "demo", "version": "1.0.0", "provides": ["a" * 64]}}
    files = bootstrap.controller_files(manifest)
    with pytest.raises(BootstrapError) as exc:
        bootstrap.refuse_delta_gaps(manifest, files)
    assert exc.value.code == 9
    assert "delta bundle over demo-1.0.0" in str(exc.value) and wheel["path"] in str(exc.value)
    assert "full bundle" in (exc.value.hint or "")
    # a delta that carries every controller file itself, and a full bundle, pass
    bootstrap.refuse_delta_gaps({**manifest, "base": {**manifest["base"], "provides": ["c" * 64]}}, files)
    bootstrap.refuse_delta_gaps({"files": [wheel, boot]}, files)
