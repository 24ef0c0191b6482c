"""Ed25519 signatures in minisign's file formats, so ``minisign -Vm FILE -p KEY.pub`` checks our bundles.

Formats (https://jedisct1.github.io/minisign/):
- public key: ``untrusted comment: ...`` then base64(``Ed`` || key id (8) || public key (32))
- secret key: base64(``Ed`` || kdf ``Sc`` or 0x0000 || ``B2`` || salt (32) || opslimit (8 LE) ||
  memlimit (8 LE) || [key id (8) || secret key (64) || blake2b-256 checksum (32)]), the bracketed part
  XOR-ed with scrypt(password) when the key is encrypted
- signature: base64(``ED`` || key id || Ed25519(blake2b-512(file))), a trusted comment, and a global
  signature over (signature || trusted comment)
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from packager.errors import KeyFileError, SignatureError

PASSWORD_ENV = "PACKAGER_KEY_PASSWORD"  # noqa: S105 (the name of the variable, not a password)
_SIG_ALG = b"Ed"
_SIG_ALG_HASHED = b"ED"
_KDF_SCRYPT = b"Sc"
_KDF_NONE = b"\0\0"
_CHK_ALG = b"B2"
# libsodium's crypto_pwhash_scryptsalsa208sha256 *_SENSITIVE limits, as minisign uses them
_OPSLIMIT = 33554432
_MEMLIMIT = 1073741824


@dataclass(frozen=True)
class PublicKey:
    key_id: bytes  # 8 bytes, as stored
    key: bytes  # 32 bytes

    @property
    def key_id_hex(self) -> str:
        """The id as minisign prints it (little-endian 64-bit number, upper-case hex)."""
        return self.key_id[::-1].hex().upper()

    def to_text(self) -> str:
        b64 = base64.b64encode(_SIG_ALG + self.key_id + self.key).decode()
        return f"untrusted comment: minisign public key {self.key_id_hex}\n{b64}\n"


@dataclass(frozen=True)
class SecretKey:
    key_id: bytes
    seed: bytes  # 32-byte Ed25519 seed
    public: bytes  # 32 bytes

    @property
    def public_key(self) -> PublicKey:
        return PublicKey(self.key_id, self.public)

    def _private(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self.seed)

    def to_text(self, password: str | None = None) -> str:
        sk = self.seed + self.public
        chk = hashlib.blake2b(_SIG_ALG + self.key_id + sk, digest_size=32).digest()
        inner = self.key_id + sk + chk
        if password:
            salt = secrets.token_bytes(32)
            stream = _kdf(password, salt, _OPSLIMIT, _MEMLIMIT, len(inner))
            inner = bytes(a ^ b for a, b in zip(inner, stream, strict=True))
            head = _SIG_ALG + _KDF_SCRYPT + _CHK_ALG + salt + struct.pack("<QQ", _OPSLIMIT, _MEMLIMIT)
            comment = "minisign encrypted secret key"
        else:
            head = _SIG_ALG + _KDF_NONE + _CHK_ALG + bytes(32) + struct.pack("<QQ", 0, 0)
            comment = "minisign secret key (unencrypted)"
        return f"untrusted comment: {comment}\n{base64.b64encode(head + inner).decode()}\n"


def _pickparams(opslimit: int, memlimit: int) -> tuple[int, int, int]:
    """libsodium's mapping of (opslimit, memlimit) to scrypt (log2 N, r, p)."""
    opslimit = max(opslimit, 32768)
    r = 8
    if opslimit < memlimit // 32:
        p = 1
        max_n = opslimit // (r * 4)
        n_log2 = 1
        while n_log2 < 63 and (1 << n_log2) <= max_n // 2:
            n_log2 += 1
    else:
        max_n = memlimit // (r * 128)
        n_log2 = 1
        while n_log2 < 63 and (1 << n_log2) <= max_n // 2:
            n_log2 += 1
        maxrp = min((opslimit // 4) // (1 << n_log2), 0x3FFFFFFF)
        p = maxrp // r
    return n_log2, r, p


def _kdf(password: str, salt: bytes, opslimit: int, memlimit: int, length: int) -> bytes:
    n_log2, r, p = _pickparams(opslimit, memlimit)
    return Scrypt(salt=salt, length=length, n=1 << n_log2, r=r, p=p).derive(password.encode())


def _payload(text: str, what: str, source: str) -> bytes:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines or not lines[0].startswith("untrusted comment:") or len(lines) < 2:
        raise KeyFileError(f"not a minisign {what}: expected an 'untrusted comment:' line and a base64 line",
                           where=source)
    try:
        return base64.b64decode(lines[1].strip(), validate=True)
    except ValueError:
        raise KeyFileError(f"not a minisign {what}: second line is not base64", where=source) from None


def parse_public_key(text: str, source: str = "<public key>") -> PublicKey:
    stripped = text.strip()
    if stripped and "\n" not in stripped and not stripped.startswith("untrusted comment:"):
        text = "untrusted comment: \n" + stripped  # the bare base64 form, as `minisign -P` takes it
    raw = _payload(text, "public key", source)
    if len(raw) != 42 or raw[:2] != _SIG_ALG:
        raise KeyFileError("not a minisign Ed25519 public key (wrong length or algorithm)", where=source,
                           hint="pass the .pub file written by `python -m packager keygen` or `minisign -G`")
    return PublicKey(raw[2:10], raw[10:42])


def load_public_key(path: Path | str) -> PublicKey:
    p = Path(path)
    try:
        return parse_public_key(p.read_text(encoding="utf-8"), str(p))
    except FileNotFoundError:
        raise KeyFileError("public key file not found", where=str(p)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"cannot read public key: {exc}", where=str(p)) from None


def parse_secret_key(text: str, source: str = "<secret key>", password: str | None = None) -> SecretKey:
    raw = _payload(text, "secret key", source)
    if len(raw) != 158 or raw[:2] != _SIG_ALG or raw[4:6] != _CHK_ALG:
        raise KeyFileError("not a minisign Ed25519 secret key (wrong length or algorithm)", where=source,
                           hint="a .pub file is not a secret key; pass the .key file")
    kdf = raw[2:4]
    salt = raw[6:38]
    opslimit, memlimit = struct.unpack("<QQ", raw[38:54])
    inner = raw[54:]
    if kdf == _KDF_SCRYPT:
        if password is None:
            password = os.environ.get(PASSWORD_ENV)
        if not password:
            raise KeyFileError("the secret key is encrypted and no password was given", where=source,
                               hint=f"set {PASSWORD_ENV} to the key's password")
        stream = _kdf(password, salt, opslimit, memlimit, len(inner))
        inner = bytes(a ^ b for a, b in zip(inner, stream, strict=True))
    elif kdf != _KDF_NONE:
        raise KeyFileError(f"unsupported key derivation {kdf!r}", where=source)
    key_id, sk, chk = inner[:8], inner[8:72], inner[72:104]
    # minisign 0.11 leaves the checksum of unencrypted keys zeroed; the public-half check below still holds
    unchecked = kdf == _KDF_NONE and chk == bytes(32)
    if not unchecked and hashlib.blake2b(_SIG_ALG + key_id + sk, digest_size=32).digest() != chk:
        raise KeyFileError(
            "wrong password for the secret key" if kdf == _KDF_SCRYPT else "secret key checksum mismatch",
            where=source,
            hint=f"check {PASSWORD_ENV}" if kdf == _KDF_SCRYPT else "the key file is damaged",
        )
    seed, public = sk[:32], sk[32:]
    derived = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    if derived != public:
        raise KeyFileError("secret key is inconsistent (public half does not match)", where=source)
    return SecretKey(key_id, seed, public)


def load_secret_key(path: Path | str, password: str | None = None) -> SecretKey:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KeyFileError("secret key file not found", where=str(p),
                           hint="make one with `python -m packager keygen --out PREFIX`") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"cannot read secret key: {exc}", where=str(p)) from None
    return parse_secret_key(text, str(p), password)


def generate_key() -> SecretKey:
    priv = Ed25519PrivateKey.generate()
    seed = priv.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                              serialization.NoEncryption())
    public = priv.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return SecretKey(secrets.token_bytes(8), seed, public)


def write_keypair(prefix: Path | str, password: str | None = None, *, force: bool = False) -> tuple[Path, Path]:
    """Write PREFIX.key (mode 0600) and PREFIX.pub. Refuses to overwrite an existing key unless forced."""
    key_path, pub_path = Path(f"{prefix}.key"), Path(f"{prefix}.pub")
    if not force and (key_path.exists() or pub_path.exists()):
        raise KeyFileError("a key pair already exists here; refusing to overwrite it", where=str(key_path),
                           hint="choose another --out prefix or pass --force")
    key = generate_key()
    key_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(key.to_text(password))
    pub_path.write_text(key.public_key.to_text(), encoding="utf-8")
    return key_path, pub_path


def sign(data: bytes, key: SecretKey, *, file_name: str, timestamp: int | None = None) -> str:
    """Return a minisign signature file (prehashed ``ED`` algorithm) for ``data``."""
    if timestamp is None:
        sde = os.environ.get("SOURCE_DATE_EPOCH")
        timestamp = int(sde) if sde and sde.isdigit() else int(time.time())
    priv = key._private()
    sig = priv.sign(hashlib.blake2b(data, digest_size=64).digest())
    trusted = f"timestamp:{timestamp}\tfile:{file_name}\thashed"
    global_sig = priv.sign(sig + trusted.encode())
    return (
        f"untrusted comment: signature from airlock packager, key {key.public_key.key_id_hex}\n"
        f"{base64.b64encode(_SIG_ALG_HASHED + key.key_id + sig).decode()}\n"
        f"trusted comment: {trusted}\n"
        f"{base64.b64encode(global_sig).decode()}\n"
    )


@dataclass(frozen=True)
class Verified:
    key: PublicKey
    trusted_comment: str


def verify(data: bytes, signature_text: str, keys: list[PublicKey], *, source: str = "<signature>") -> Verified:
    """Check a minisign signature against a set of trusted keys. Raises SignatureError on any failure."""
    if not keys:
        raise SignatureError("no trusted public key given; refusing to accept an unverified bundle",
                             where=source, hint="pass --pubkey KEY.pub")
    lines = signature_text.splitlines()
    if len(lines) < 4 or not lines[0].startswith("untrusted comment:") or not lines[2].startswith(
        "trusted comment: "
    ):
        raise SignatureError("malformed minisign signature file", where=source)
    try:
        raw = base64.b64decode(lines[1].strip(), validate=True)
        global_sig = base64.b64decode(lines[3].strip(), validate=True)
    except ValueError:
        raise SignatureError("malformed minisign signature file (bad base64)", where=source) from None
    if len(raw) != 74 or raw[:2] not in (_SIG_ALG, _SIG_ALG_HASHED) or len(global_sig) != 64:
        raise SignatureError("unsupported or malformed signature", where=source)
    alg, key_id, sig = raw[:2], raw[2:10], raw[10:]
    trusted = lines[2][len("trusted comment: ") :]
    matching = [k for k in keys if k.key_id == key_id]
    if not matching:
        signer = key_id[::-1].hex().upper()
        trusted_ids = ", ".join(k.key_id_hex for k in keys)
        raise SignatureError(
            f"signed by key {signer}, which is not a trusted key (trusted: {trusted_ids})",
            where=source,
            hint="get the bundle's public key from its publisher through a separate channel, "
            "or rebuild and sign it with your key",
        )
    key = matching[0]
    pub = Ed25519PublicKey.from_public_bytes(key.key)
    message = hashlib.blake2b(data, digest_size=64).digest() if alg == _SIG_ALG_HASHED else data
    try:
        pub.verify(sig, message)
    except InvalidSignature:
        raise SignatureError(
            f"signature does not match the signed file (key {key.key_id_hex}): it was altered after signing",
            where=source,
        ) from None
    try:
        pub.verify(global_sig, sig + trusted.encode())
    except InvalidSignature:
        raise SignatureError("the trusted comment was altered after signing", where=source) from None
    return Verified(key, trusted)
