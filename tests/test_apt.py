"""System packages: resolved by real apt against Debian's archive for the target, carried as a flat apt repository.

Real parts: Debian's archive (bookworm, signed Release files checked with Debian's keyring), apt-get and
apt-cache in a private root, the bundle built and unpacked through the CLI, and a second private apt that
installs from the unpacked ``apt/`` folder alone with no network at all (``unshare -n``).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from packager.cache import Cache
from packager.errors import LockError, SpecError
from packager.lock import AptLock
from packager.lock.apt import DATA, find_apt, lock_apt, parse_deb822
from packager.spec import load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[1]
BASE = DATA / "debian12-minbase.status"
HEAD = 'bundle: {name: sys, version: "1.0"}\ntarget: {os: debian12, arch: x86_64, python: "3.11"}\n'


def _spec(folder: Path, apt: dict[str, Any], name: str = "models.yaml", arch: str = "x86_64") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    data = {"bundle": {"name": "sys", "version": "1.0"},
            "target": {"os": "debian12", "arch": arch, "python": "3.11"},
            "system_packages": {"apt": apt}}
    p.write_text(yaml.safe_dump(data, sort_keys=False))
    return p


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "packager", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=600)


def _fake_deb(folder: Path) -> Path:
    """A local .deb of our own that depends on jq (so its dependencies must come from the archive)."""
    src = folder / "airlock-probe"
    (src / "DEBIAN").mkdir(parents=True)
    (src / "usr/share/airlock-probe").mkdir(parents=True)
    (src / "usr/share/airlock-probe/hello.txt").write_text("hello\n")
    (src / "DEBIAN/control").write_text(
        "Package: airlock-probe\nVersion: 1.0-1\nArchitecture: all\nMaintainer: Airlock <a@example.invalid>\n"
        "Depends: jq\nDescription: a package the archive does not have\n more text\n")
    out = folder / "airlock-probe_1.0-1_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "-b", str(src), str(out)], check=True,
                   capture_output=True)
    return out


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the module: apt's lists are fetched once, later resolutions only revalidate them."""
    return tmp_path_factory.mktemp("aptcache")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, shared_cache: Path,
          keypair: tuple[Path, Path]) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("apt")
    deb = _fake_deb(tmp / "debs")
    digest = hashlib.sha256(deb.read_bytes()).hexdigest()
    spec = _spec(tmp / "spec", {"packages": ["hello", "jq=1.6*"],
                                "debs": [{"path": "../debs/" + deb.name, "sha256": digest}]})
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_", "APT_"))}
    env.update(AIRLOCK_CACHE=str(shared_cache), SOURCE_DATE_EPOCH="1700000000", AIRLOCK_PROGRESS="0")
    out = tmp / "dist"
    r = _cli(["build", "--models", str(spec), "--key", str(keypair[0]), "--out", str(out)], env)
    assert r.returncode == 0, r.stderr
    bundle = out / "sys-1.0"
    dest = tmp / "release"
    r = _cli(["unpack", str(bundle), str(dest), "--pubkey", str(keypair[1])], env)
    assert r.returncode == 0, r.stderr
    return {"spec": spec, "env": env, "bundle": bundle, "dest": dest, "tmp": tmp, "deb": deb, "digest": digest,
            "keypair": keypair, "lock": json.loads(spec.with_suffix(".lock").read_text())}


@pytest.mark.network
def test_the_closure_is_what_the_base_lacks(built: dict[str, Any], shared_cache: Path) -> None:
    lock = built["lock"]["apt"]
    debs = {d["package"]: d for d in lock["debs"]}
    base = {s["Package"] for s in parse_deb822(BASE.read_text())}
    # asked for, and pulled in by jq (libjq1 -> libonig5) or by the spec's own deb; none of them in the base
    assert set(debs) == {"hello", "jq", "libjq1", "libonig5", "airlock-probe"}
    assert not set(debs) & base
    assert {"libc6", "libgcc-s1"} <= base  # what hello and jq need beyond that is already on the target
    assert debs["jq"]["version"].startswith("1.6")
    assert lock["arch"] == "amd64" and lock["base"] == "debian12-minbase" and lock["resolver"].startswith("apt ")
    for d in lock["debs"]:
        if d["package"] == "airlock-probe":
            assert d["url"] == built["deb"].resolve().as_uri() and d["sha256"] == built["digest"]
            continue
        assert d["url"].startswith("http://deb.debian.org/debian/pool/main/") and d["arch"] == "amd64"
        assert d["fields"]["Package"] == d["package"] and "\n" not in d["fields"]["Description"]
        # what was fetched into the cache (and so into the bundle) is exactly what the lock names
        data = Cache(shared_cache).path(d["sha256"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == d["sha256"] and len(data) == d["size"]
    assert "libonig5" in debs["libjq1"]["fields"]["Depends"]


@pytest.mark.network
def test_bundle_carries_a_flat_repository_and_inspect_lists_it(built: dict[str, Any]) -> None:
    manifest = json.loads((built["bundle"] / "manifest.json").read_text())
    paths = {f["path"] for f in manifest["files"]}
    pool = {f"apt/pool/{d['filename']}" for d in built["lock"]["apt"]["debs"]}
    assert pool | {"apt/Packages", "apt/Packages.gz", "apt/Release"} <= paths
    apt = built["dest"] / "apt"
    packages = (apt / "Packages").read_bytes()
    assert gzip.decompress((apt / "Packages.gz").read_bytes()) == packages
    assert (apt / "Packages.gz").read_bytes()[4:8] == b"\0\0\0\0"  # gzip mtime 0: deterministic
    release = (apt / "Release").read_text()
    assert "Date: Tue, 14 Nov 2023 22:13:20 UTC" in release  # from SOURCE_DATE_EPOCH
    assert f" {hashlib.sha256(packages).hexdigest()} " in release
    for stanza in parse_deb822(packages.decode()):
        f = apt / stanza["Filename"]
        assert hashlib.sha256(f.read_bytes()).hexdigest() == stanza["SHA256"]
        assert f.stat().st_size == int(stanza["Size"])

    r = _cli(["inspect", str(built["bundle"]), "--json", "--pubkey", str(built["keypair"][1])], built["env"])
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    got = {d["name"]: (d["version"], d["size"]) for d in info["system_packages"]}
    assert got == {d["package"]: (d["version"], d["size"]) for d in built["lock"]["apt"]["debs"]}
    r = _cli(["inspect", str(built["bundle"])], built["env"])
    assert "system packages (5" in r.stdout and "libonig5" in r.stdout


def _offline_apt(folder: Path, repo: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """apt-get with no network, whose only source is the unpacked repository and whose dpkg status is the base."""
    for sub in ("lists/partial", "cache/archives/partial", "state", "etc/parts", "etc/preferences.d"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(BASE, folder / "state/status")
    (folder / "sources.list").write_text(f"deb [trusted=yes] file:{repo} ./\n")
    conf = {"Dir": f"{folder}/", "Dir::Etc::main": "/dev/null", "Dir::Etc::parts": f"{folder}/etc/parts",
            "Dir::Etc::sourcelist": f"{folder}/sources.list", "Dir::Etc::sourceparts": "-",
            "Dir::Etc::preferencesparts": f"{folder}/etc/preferences.d", "Dir::State": f"{folder}/state/",
            "Dir::State::Lists": f"{folder}/lists/", "Dir::State::status": f"{folder}/state/status",
            "Dir::Cache": f"{folder}/cache/", "APT::Architecture": "amd64", "APT::Sandbox::User": "root",
            "Debug::NoLocking": "true"}
    (folder / "apt.conf").write_text("".join(f'{k} "{v}";\n' for k, v in conf.items())
                                     + 'APT::Architectures { "amd64"; };\n')
    env = dict(os.environ, APT_CONFIG=str(folder / "apt.conf"), LC_ALL="C")
    if subprocess.run(["unshare", "-n", "true"], capture_output=True, check=False).returncode != 0:
        pytest.skip("unshare -n is not permitted here (needs root or user namespaces)")

    def apt(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["unshare", "-n", "apt-get", *args], capture_output=True, text=True, env=env,
                              timeout=120, check=False)

    return apt


@pytest.mark.network
def test_real_apt_installs_from_the_unpacked_repository_offline(built: dict[str, Any]) -> None:
    apt = _offline_apt(built["tmp"] / "host", built["dest"] / "apt")
    r = apt("update")
    assert r.returncode == 0 and "E:" not in r.stdout + r.stderr, r.stdout + r.stderr
    r = apt("install", "-s", "-y", "hello", "jq", "airlock-probe")
    assert r.returncode == 0, r.stdout + r.stderr
    inst = {ln.split()[1] for ln in r.stdout.splitlines() if ln.startswith("Inst ")}
    assert inst == {"hello", "jq", "libjq1", "libonig5", "airlock-probe"}
    uris = [ln.split()[0] for ln in apt("install", "--print-uris", "-qq", "-y", "hello", "jq").stdout.splitlines()]
    assert len(uris) == 4 and all(u.startswith(f"'file:{built['dest']}/apt/pool/") for u in uris)
    # --download-only makes apt check every file against the index's SHA256 and size ...
    r = apt("install", "--download-only", "-y", "hello", "jq", "airlock-probe")
    assert r.returncode == 0 and "mismatch" not in r.stdout + r.stderr, r.stdout + r.stderr
    # ... which it really does: one flipped bit in a copy of the repository fails the download
    tampered = built["tmp"] / "tampered"
    shutil.copytree(built["dest"] / "apt", tampered)
    hello = next((tampered / "pool").glob("hello_*.deb"))
    data = bytearray(hello.read_bytes())
    data[-10] ^= 1
    hello.write_bytes(bytes(data))
    apt = _offline_apt(built["tmp"] / "host2", tampered)
    assert apt("update").returncode == 0
    r = apt("install", "--download-only", "-y", "hello")
    assert r.returncode != 0 and "Hash Sum mismatch" in r.stdout + r.stderr


@pytest.mark.network
def test_unchanged_spec_resolves_nothing_again(built: dict[str, Any], shared_cache: Path) -> None:
    specfile = load_spec(built["spec"])
    previous = AptLock.model_validate(built["lock"]["apt"])
    assert lock_apt(specfile, Cache(shared_cache), previous=previous) is previous


@pytest.mark.network
def test_arm64_target_gets_arm64_debs(tmp_path: Path, shared_cache: Path) -> None:
    spec = _spec(tmp_path, {"packages": ["jq"]}, arch="aarch64")
    lk = lock_apt(load_spec(spec), Cache(shared_cache))
    assert lk is not None and lk.arch == "arm64"
    assert {d.package for d in lk.debs} == {"jq", "libjq1", "libonig5"}
    assert all(d.filename.endswith("_arm64.deb") for d in lk.debs)


def _lock_error(tmp_path: Path, cache: Path, apt: dict[str, Any]) -> LockError:
    with pytest.raises(LockError) as err:
        lock_apt(load_spec(_spec(tmp_path, apt)), Cache(cache))
    return err.value


@pytest.mark.network
def test_a_package_the_suite_lacks_is_named(tmp_path: Path, shared_cache: Path) -> None:
    e = _lock_error(tmp_path, shared_cache, {"packages": ["hello", "airlock-no-such-package"]})
    assert "airlock-no-such-package" in str(e) and "bookworm" in str(e) and e.where == "system_packages.apt.packages"


@pytest.mark.network
def test_an_unmatched_pin_names_package_and_version(tmp_path: Path, shared_cache: Path) -> None:
    e = _lock_error(tmp_path, shared_cache, {"packages": ["hello=9.9*"]})
    assert "hello=9.9*" in str(e) and "available: 2.10-3" in str(e) and "bookworm" in str(e)


@pytest.mark.network
def test_a_wrong_keyring_fails_the_release_signature(tmp_path: Path, shared_cache: Path) -> None:
    wrong = Path("/usr/share/keyrings/debian-archive-removed-keys.gpg")  # old keys, none signs bookworm
    if not wrong.is_file():
        pytest.skip("debian-archive-keyring's removed-keys file is not installed")
    source = {"uri": "http://deb.debian.org/debian", "suite": "bookworm", "components": ["main"],
              "keyring": str(wrong)}
    e = _lock_error(tmp_path, shared_cache, {"sources": [source], "packages": ["hello"]})
    assert e.where == "system_packages.apt.sources[0]"
    assert "does not verify" in str(e) and str(wrong) in str(e) and "http://deb.debian.org/debian bookworm" in str(e)


def test_a_local_deb_with_another_digest_is_refused(tmp_path: Path) -> None:
    deb = _fake_deb(tmp_path)
    e = _lock_error(tmp_path, tmp_path / "cache", {"debs": [{"path": str(deb), "sha256": "0" * 64}]})
    assert "the spec says 0000" in str(e) and e.where is not None and "debs[0]" in e.where


def test_apt_get_missing_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(LockError, match="apt-get is needed"):
        find_apt()


def test_no_system_packages_means_no_apt_section(tmp_path: Path) -> None:
    assert lock_apt(load_spec(_spec(tmp_path, {"packages": []})), Cache(tmp_path / "cache")) is None


@pytest.mark.parametrize(
    ("apt", "expected"),
    [
        ("{packages: [Nginx]}", r"models.yaml:4: system_packages.apt.packages.0: not NAME or NAME=VERSION"),
        ("{packages: [hello, hello=2.*]}", r"'hello' is listed twice"),
        ("{base: debian99-minbase}", r"unknown built-in base 'debian99-minbase'"),
        ("{sources: [{uri: ftp://x, suite: s}]}", r"sources.0.uri: an apt source URI is http"),
        ("{sources: [{uri: 'http://x', suite: s, components: []}]}", r"components is empty"),
        ("{debs: [{path: a.deb, sha256: abc}]}", r"debs.0.sha256: String should match"),
        ("{packges: [hello]}", r"system_packages.apt.packges: unknown key"),
    ],
)
def test_spec_errors_name_the_field(apt: str, expected: str) -> None:
    with pytest.raises(SpecError, match=expected):
        parse_spec(HEAD + f"system_packages:\n  apt: {apt}\n", "models.yaml")


def test_spec_defaults_follow_the_target() -> None:
    s = parse_spec(HEAD + "system_packages:\n  apt: {packages: [hello]}\n")
    assert [(x.uri, x.suite, x.components) for x in s.apt_sources] == [("http://deb.debian.org/debian", "bookworm",
                                                                        ["main"])]
    assert s.apt_base == "debian12-minbase"
    with pytest.raises(SpecError, match="no built-in base for 'debian13'"):
        parse_spec(HEAD.replace("debian12", "debian13") + "system_packages:\n  apt: {packages: [hello]}\n")
    a = parse_spec(HEAD + "system_packages:\n  apt: {packages: [hello]}\n")
    b = parse_spec(HEAD + "system_packages:\n  apt: {packages: [hello, jq]}\n")
    assert a.section_digest("system_packages") != b.section_digest("system_packages")
    assert a.section_digest("python") == b.section_digest("python")
