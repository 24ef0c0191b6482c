"""The operator's own projects (``python.local``): built into wheels, resolved with their dependencies,
carried in the bundle, and re-resolved only when their sources change. Real uv, real setuptools, real index."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest
import yaml

from packager.build import build, lock
from packager.cache import Cache
from packager.errors import LockError
from packager.signing import load_secret_key
from packager.spec import SpecFile, parse_spec

PYPROJECT = """[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "acme-gateway"
version = "{version}"
dependencies = ["idna>=3"]

[tool.setuptools]
packages = ["acme_gateway"]
"""


def _project(folder: Path, version: str = "1.0.0", body: str = "ANSWER = 42\n") -> Path:
    (folder / "acme_gateway").mkdir(parents=True, exist_ok=True)
    (folder / "pyproject.toml").write_text(PYPROJECT.format(version=version))
    (folder / "acme_gateway" / "__init__.py").write_text(body)
    return folder


def _spec(folder: Path, local: list[str], requirements: list[str] | None = None) -> SpecFile:
    data = {"bundle": {"name": "loc", "version": "1.0.0"},
            "target": {"os": "debian12", "arch": "x86_64", "python": "3.11", "manylinux": "2_36", "cuda": None},
            "python": {"requirements": requirements or [], "local": local}}
    path = folder / "models.yaml"
    text = yaml.safe_dump(data, sort_keys=False)
    path.write_text(text)
    return SpecFile(path=path, spec=parse_spec(text, str(path)), sha256=hashlib.sha256(text.encode()).hexdigest())


@pytest.mark.network
def test_a_local_project_is_built_resolved_and_carried(tmp_path: Path, keypair: tuple[Path, Path]) -> None:
    _project(tmp_path / "src" / "gateway")
    specfile = _spec(tmp_path, ["src/gateway"], ["six"])
    cache = Cache(tmp_path / "cache")
    lk = lock(specfile, cache)
    assert lk.python is not None
    wheels = {w.name: w for w in lk.python.wheels}
    # the project, its dependency (idna) and the plain requirement, recorded without this machine's paths
    assert set(wheels) == {"acme-gateway", "idna", "six"}
    gw = wheels["acme-gateway"]
    assert gw.url == "local:src/gateway" and gw.filename == "acme_gateway-1.0.0-py3-none-any.whl"
    assert str(tmp_path) not in specfile.lock_path.read_text()
    first_digest = lk.python.spec_digest

    # the same sources give the same wheel bytes, so the lock is reused as it is
    again = lock(specfile, cache)
    assert again.python == lk.python

    bundle = build(specfile, load_secret_key(keypair[0]), tmp_path / "dist", cache)
    manifest = json.loads((bundle / "manifest.json").read_text())
    entry = next(f for f in manifest["files"] if f["path"] == f"wheels/{gw.filename}")
    blob = bundle / "blobs" / "sha256" / entry["sha256"]
    with zipfile.ZipFile(blob) as z:
        assert z.read("acme_gateway/__init__.py") == b"ANSWER = 42\n"

    # an edited source is a new wheel: the python section is resolved again, and the bundle carries it
    _project(tmp_path / "src" / "gateway", body="ANSWER = 43\n")
    edited = lock(specfile, cache)
    assert edited.python is not None and edited.python.spec_digest != first_digest
    new = {w.name: w for w in edited.python.wheels}["acme-gateway"]
    assert new.sha256 != gw.sha256
    assert {w.name for w in edited.python.wheels} == set(wheels)


@pytest.mark.network
def test_local_project_errors_name_the_entry(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(LockError) as e:
        lock(_spec(tmp_path, ["empty"]), Cache(tmp_path / "cache"))
    assert e.value.where is not None and "python.local[0]" in e.value.where and "pyproject.toml" in str(e.value)

    broken = _project(tmp_path / "broken")
    (broken / "pyproject.toml").write_text(PYPROJECT.format(version="not a version!"))
    with pytest.raises(LockError) as e:
        lock(_spec(tmp_path, ["broken"]), Cache(tmp_path / "cache"))
    assert e.value.where is not None and "python.local[0]" in e.value.where and "uv build" in str(e.value)


def test_local_entries_are_folders() -> None:
    text = ('bundle: {name: a, version: "1"}\ntarget: {os: debian12, arch: x86_64, python: "3.11"}\n'
            'python: {local: ["https://example.invalid/x"]}\n')
    from packager.errors import SpecError

    with pytest.raises(SpecError) as e:
        parse_spec(text, "models.yaml")
    assert "local[0]" in str(e.value) and "models.yaml:3" in str(e.value)
