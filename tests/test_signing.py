"""minisign interoperability: our signatures verify with Debian's minisign and theirs with us."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from packager import signing
from packager.errors import KeyFileError, SignatureError

needs_minisign = pytest.mark.skipif(shutil.which("minisign") is None, reason="minisign not installed")


def _sign_file(path: Path, key: Path) -> Path:
    sig = path.with_name(path.name + ".minisig")
    sig.write_text(signing.sign(path.read_bytes(), signing.load_secret_key(key), file_name=path.name))
    return sig


@needs_minisign
def test_minisign_verifies_our_signature(tmp_path: Path, keypair: tuple[Path, Path]) -> None:
    key, pub = keypair
    msg = tmp_path / "manifest.json"
    msg.write_bytes(b'{"a": 1}\n' * 1000)
    _sign_file(msg, key)
    r = subprocess.run(["minisign", "-Vm", str(msg), "-p", str(pub)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "Signature and comment signature verified" in r.stdout
    msg.write_bytes(msg.read_bytes() + b" ")
    r = subprocess.run(["minisign", "-Vm", str(msg), "-p", str(pub)], capture_output=True, text=True)
    assert r.returncode != 0


@needs_minisign
def test_keys_made_by_minisign_work(tmp_path: Path) -> None:
    sk, pk = tmp_path / "m.key", tmp_path / "m.pub"
    subprocess.run(["minisign", "-G", "-W", "-p", str(pk), "-s", str(sk)], check=True, capture_output=True)
    msg = tmp_path / "f"
    msg.write_bytes(b"payload")
    # minisign's unencrypted secret key signs with our code, minisign verifies
    _sign_file(msg, sk)
    subprocess.run(["minisign", "-Vm", str(msg), "-p", str(pk)], check=True, capture_output=True)
    # minisign's own signature verifies with our code
    theirs = tmp_path / "f.theirs"
    subprocess.run(["minisign", "-Sm", str(msg), "-s", str(sk), "-x", str(theirs)], check=True, capture_output=True)
    v = signing.verify(msg.read_bytes(), theirs.read_text(), [signing.load_public_key(pk)])
    assert "file:f" in v.trusted_comment


@needs_minisign
def test_encrypted_key_roundtrip_with_minisign(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sk, pk = tmp_path / "e.key", tmp_path / "e.pub"
    subprocess.run(["minisign", "-G", "-p", str(pk), "-s", str(sk)], input="s3cret\ns3cret\n", text=True,
                   check=True, capture_output=True)
    msg = tmp_path / "f"
    msg.write_bytes(b"x" * 100)
    monkeypatch.delenv(signing.PASSWORD_ENV, raising=False)
    with pytest.raises(KeyFileError, match=signing.PASSWORD_ENV):
        signing.load_secret_key(sk)
    with pytest.raises(KeyFileError, match="wrong password"):
        signing.load_secret_key(sk, password="nope")
    monkeypatch.setenv(signing.PASSWORD_ENV, "s3cret")
    _sign_file(msg, sk)
    subprocess.run(["minisign", "-Vm", str(msg), "-p", str(pk)], check=True, capture_output=True)
    # and a key we encrypt is accepted by minisign for signing
    ours = signing.generate_key()
    (tmp_path / "o.key").write_text(ours.to_text("pw"))
    (tmp_path / "o.pub").write_text(ours.public_key.to_text())
    subprocess.run(["minisign", "-Sm", str(msg), "-s", str(tmp_path / "o.key"), "-x", str(tmp_path / "o.sig")],
                   input="pw\n", text=True, check=True, capture_output=True)
    signing.verify(msg.read_bytes(), (tmp_path / "o.sig").read_text(), [ours.public_key])


def test_wrong_key_tampered_data_and_comment(keypair: tuple[Path, Path]) -> None:
    key = signing.load_secret_key(keypair[0])
    pub = signing.load_public_key(keypair[1])
    other = signing.generate_key().public_key
    sig = signing.sign(b"data", key, file_name="m")
    with pytest.raises(SignatureError, match=f"signed by key {pub.key_id_hex}.*not a trusted key"):
        signing.verify(b"data", sig, [other])
    with pytest.raises(SignatureError, match="altered after signing"):
        signing.verify(b"datA", sig, [pub])
    lines = sig.splitlines()
    lines[2] = lines[2].replace("file:m", "file:evil")
    with pytest.raises(SignatureError, match="trusted comment was altered"):
        signing.verify(b"data", "\n".join(lines), [pub])
    with pytest.raises(SignatureError, match="no trusted public key"):
        signing.verify(b"data", sig, [])
    # a key set (rotation): the old key and the new one are both trusted
    assert signing.verify(b"data", sig, [other, pub]).key == pub


def test_bad_key_files(tmp_path: Path, keypair: tuple[Path, Path]) -> None:
    with pytest.raises(KeyFileError, match="not found"):
        signing.load_secret_key(tmp_path / "missing.key")
    with pytest.raises(KeyFileError, match="not a minisign Ed25519 secret key"):
        signing.load_secret_key(keypair[1])  # a public key passed as the secret one
    junk = tmp_path / "junk.pub"
    junk.write_text("hello\n")
    with pytest.raises(KeyFileError):
        signing.load_public_key(junk)
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        signing.write_keypair(str(keypair[0])[: -len(".key")])


def test_signature_is_deterministic_with_source_date_epoch(keypair: tuple[Path, Path],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    key = signing.load_secret_key(keypair[0])
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    a = signing.sign(b"same", key, file_name="m")
    b = signing.sign(b"same", key, file_name="m")
    assert a == b
    assert "timestamp:1700000000" in a
