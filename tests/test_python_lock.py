"""Locking Python requirements for a foreign target with the real resolver (uv) and the real index."""

from __future__ import annotations

import hashlib
import http.server
import socket
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

import pytest
import yaml

from packager.errors import CudaMismatchError, FetchError, LockError, NoWheelError
from packager.hashing import sha256_file
from packager.lock import PythonLock, WheelLock
from packager.lock.python import _check_torch, _wheels_from_pylock, lock_python
from packager.lock.sdist import rebuild
from packager.spec import PythonSection, SpecFile, Target, parse_spec

HEX = set("0123456789abcdef")
CPU_TORCH = sorted(Path("/opt/wheels").glob("torch-2.13.0+cpu-cp311-*.whl"))


def make_spec(tmp_path: Path, py: dict[str, Any], **target: Any) -> SpecFile:
    target.setdefault("python", "3.12")
    data = {"bundle": {"name": "t", "version": "1"}, "target": target, "python": py}
    path = tmp_path / "models.yaml"
    text = yaml.safe_dump(data)
    path.write_text(text)
    return SpecFile(path=path, spec=parse_spec(text, str(path)), sha256=hashlib.sha256(text.encode()).hexdigest())


def by_name(lock: PythonLock) -> dict[str, WheelLock]:
    return {w.name: w for w in lock.wheels}


def build_wheel(folder: Path, name: str, version: str, tag: str = "cp312-cp312-manylinux_2_28_x86_64",
                requires: tuple[str, ...] = ()) -> Path:
    """A minimal but valid wheel: enough for a resolver to read its metadata."""
    dist = f"{name}-{version}"
    path = folder / f"{dist}-{tag}.whl"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{name}/__init__.py", "")
        z.writestr(f"{dist}.dist-info/METADATA", meta)
        wheel = f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\nTag: {tag}\n"
        z.writestr(f"{dist}.dist-info/WHEEL", wheel)
        z.writestr(f"{dist}.dist-info/RECORD", "")
    return path


@pytest.fixture
def no_uv_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UV_HTTP_RETRIES", "0")


# --- against the real index ---------------------------------------------------------------------------


@pytest.mark.network
def test_lock_for_a_foreign_python(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, {"requirements": ["six", "idna", "pyyaml", 'tomli; python_version < "3.11"']},
                     python="3.12", manylinux="2_28")
    lock = lock_python(spec)
    wheels = by_name(lock)
    assert set(wheels) == {"six", "idna", "pyyaml"}  # tomli's marker is evaluated for 3.12, not the host
    assert [w.name for w in lock.wheels] == sorted(wheels)
    assert "-cp312-cp312-" in wheels["pyyaml"].filename and "manylinux" in wheels["pyyaml"].filename
    assert wheels["six"].filename.endswith("-py2.py3-none-any.whl")
    for w in lock.wheels:
        assert w.url.startswith("https://") and w.url.endswith(w.filename)
        assert len(w.sha256) == 64 and set(w.sha256) <= HEX
        assert w.size and w.size > 0
    assert lock.spec_digest == spec.spec.section_digest("python")
    assert lock.resolver.startswith("uv 0.")


@pytest.mark.network
def test_markers_are_evaluated_for_the_target_not_the_host(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, {"requirements": ['exceptiongroup; python_version < "3.11"', "six"]},
                     python="3.10")
    assert "exceptiongroup" in by_name(lock_python(spec))  # the host is 3.11, where the marker is false


@pytest.mark.network
def test_exclude_removes_packages_and_their_own_dependencies(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, {"requirements": ["requests"], "exclude": ["urllib3", "charset-normalizer"]})
    names = set(by_name(lock_python(spec)))
    assert "requests" in names and "idna" in names and "certifi" in names
    assert not names & {"urllib3", "charset-normalizer"}


@pytest.mark.network
def test_no_wheel_names_every_package_without_one(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, {"requirements": ["six", "crcmod", "antlr4-python3-runtime==4.9.3"]})
    with pytest.raises(NoWheelError) as err:
        lock_python(spec)  # no build folder: nothing is built
    text = str(err.value)
    assert "crcmod" in text and "antlr4-python3-runtime" in text
    assert "sdist" in text and "find_links" in text


def make_sdist(folder: Path, name: str, version: str) -> Path:
    """An sdist whose only module is a C extension with no pure-Python fallback."""
    src = folder / f"{name}-{version}"
    src.mkdir(parents=True)
    (src / "setup.py").write_text(
        "from setuptools import Extension, setup\n"
        f"setup(name={name!r}, version={version!r}, ext_modules=[Extension({name!r}, [{name + '.c'!r}])])\n")
    (src / f"{name}.c").write_text(
        "#include <Python.h>\nstatic struct PyModuleDef m = {PyModuleDef_HEAD_INIT, "
        f"\"{name}\", 0, -1, 0}};\nPyMODINIT_FUNC PyInit_{name}(void) {{ return PyModule_Create(&m); }}\n")
    (src / "PKG-INFO").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    out = folder / f"{name}-{version}.tar.gz"
    with tarfile.open(out, "w:gz") as tar:
        tar.add(src, arcname=src.name)
    return out


@pytest.mark.network
def test_pure_python_sdists_are_built_compiled_ones_named(tmp_path: Path) -> None:
    built = tmp_path / "built"
    # antlr4-python3-runtime: pure Python; crcmod: a C speed-up with a pure-Python fallback
    spec = make_spec(tmp_path, {"requirements": ["six", "antlr4-python3-runtime==4.9.3", "crcmod==1.7"]})
    lock = by_name(lock_python(spec, build_dir=built))
    assert lock["crcmod"].filename == "crcmod-1.7-py3-none-any.whl"
    antlr = lock["antlr4-python3-runtime"]
    assert antlr.filename == "antlr4_python3_runtime-4.9.3-py3-none-any.whl"
    wheel = built / antlr.filename
    # recorded by origin, not by this machine's cache path: any machine rebuilds it and checks the digest
    assert antlr.url == "sdist-build:" + antlr.filename and antlr.sha256 == sha256_file(wheel)[0]
    assert lock["six"].url.startswith("https://")
    # the same sdist builds to the same bytes: a relock does not change the lock...
    wheel.unlink()
    assert by_name(lock_python(spec, build_dir=built))["antlr4-python3-runtime"].sha256 == antlr.sha256
    # ...and a machine without the built wheel (a fresh cache) gets the locked bytes back
    again = rebuild(antlr.name, antlr.version, antlr.filename, antlr.sha256, py=spec.spec.python, find_links=[],
                    out=tmp_path / "fresh")
    assert sha256_file(again)[0] == antlr.sha256
    with pytest.raises(FetchError, match="differs from the locked one"):
        rebuild(antlr.name, antlr.version, antlr.filename, "0" * 64, py=spec.spec.python, find_links=[],
                out=tmp_path / "fresh2")

    links = tmp_path / "sdists"
    links.mkdir()
    make_sdist(links, "airlockcext", "1.0")
    spec = make_spec(tmp_path, {"requirements": ["airlockcext"], "find_links": [str(links)]}, python="3.11")
    with pytest.raises(NoWheelError, match=r"airlockcext: only an sdist with compiled code"):
        lock_python(spec, build_dir=built)


@pytest.mark.network
def test_pypi_torch_is_the_cuda_13_build(tmp_path: Path) -> None:
    """PyPI's Linux torch is the CUDA 13.0 build: a CUDA 12.4 target must get it from the cu124 index."""
    spec = make_spec(tmp_path, {"requirements": ["torch==2.13.0"]}, python="3.12", cuda="12.4")
    with pytest.raises(CudaMismatchError) as err:
        lock_python(spec)
    text = str(err.value)
    assert "torch 2.13.0" in text and "https://pypi.org/simple" in text
    assert "CUDA 13.0" in text and "cu130" in text and "12.4" in text
    assert "https://download.pytorch.org/whl/cu124" in text


@pytest.mark.network
@pytest.mark.skipif(not CPU_TORCH, reason="/opt/wheels holds no torch-2.13.0+cpu cp311 wheel on this machine")
def test_cpu_torch_from_a_find_links_folder(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, {"requirements": ["torch==2.13.0"], "find_links": ["/opt/wheels"]},
                     python="3.11", manylinux="2_28")
    torch = by_name(lock_python(spec))["torch"]
    assert torch.version == "2.13.0+cpu"
    assert torch.url.startswith("file://") and torch.filename == CPU_TORCH[0].name
    assert Path(url2pathname(urlparse(torch.url).path)) == CPU_TORCH[0]
    assert torch.size == CPU_TORCH[0].stat().st_size and len(torch.sha256) == 64


@pytest.mark.network
def test_machine_configuration_does_not_leak_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Find-links and indexes from the environment are ignored: only what the spec names counts."""
    for var in ("UV_FIND_LINKS", "PIP_FIND_LINKS"):
        monkeypatch.setenv(var, "/opt/wheels")
    monkeypatch.setenv("UV_EXTRA_INDEX_URL", "http://127.0.0.1:9/simple")
    spec = make_spec(tmp_path, {"requirements": ["torch==2.13.0"]}, python="3.11")
    with pytest.raises(CudaMismatchError, match=r"resolved from https://pypi\.org/simple is the CUDA 13\.0 build"):
        lock_python(spec)


# --- without the real index ---------------------------------------------------------------------------


def test_unchanged_spec_returns_the_previous_lock_without_resolving(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, {"requirements": ["six"]})
    previous = PythonLock(spec_digest=spec.spec.section_digest("python"), wheels=[], resolver="uv 0.0.0")
    assert lock_python(spec, previous=previous, uv="/nonexistent/uv") is previous


def test_missing_uv_is_a_lock_error(tmp_path: Path) -> None:
    with pytest.raises(LockError, match="uv not found"):
        lock_python(make_spec(tmp_path, {"requirements": ["six"]}), uv="/nonexistent/uv")


def test_unreachable_index_names_the_url(tmp_path: Path, no_uv_retries: None) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: nothing listens there
    url = f"http://127.0.0.1:{port}/simple"
    with pytest.raises(LockError) as err:
        lock_python(make_spec(tmp_path, {"requirements": ["six"], "index_url": url}))
    assert url in str(err.value) and "cannot reach" in str(err.value)


def test_missing_find_links_folder(tmp_path: Path) -> None:
    with pytest.raises(LockError, match="find_links folder does not exist"):
        lock_python(make_spec(tmp_path, {"requirements": ["six"], "find_links": ["wheels"]}))


class _IndexHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def torch_index(tmp_path: Path) -> Iterator[str]:
    """Stands in for https://download.pytorch.org/whl/cu124 (unreachable here): a PEP 503 index on
    127.0.0.1 with tiny torch-family wheels, plus an empty primary index."""
    root = tmp_path / "www"
    files = root / "files"
    files.mkdir(parents=True)
    (root / "pypi").mkdir()
    wheels = [
        build_wheel(files, "torch", "2.13.0+cu124"),
        build_wheel(files, "torchvision", "0.28.0+cu124", requires=("torch==2.13.0",)),
        build_wheel(files, "torchaudio", "2.13.0+cpu", requires=("torch==2.13.0",)),
    ]
    for whl in wheels:
        name = whl.name.split("-")[0]
        page = root / "cu124" / name / "index.html"
        page.parent.mkdir(parents=True)
        digest = hashlib.sha256(whl.read_bytes()).hexdigest()
        href = f"/files/{whl.name.replace('+', '%2B')}#sha256={digest}"
        page.write_text(f'<html><body><a href="{href}">{whl.name}</a></body></html>')

    def handler(*args: Any, **kwargs: Any) -> _IndexHandler:
        return _IndexHandler(*args, directory=str(root), **kwargs)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_cuda_matched_torch_from_an_extra_index(tmp_path: Path, torch_index: str) -> None:
    spec = make_spec(tmp_path, {"requirements": ["torch==2.13.0", "torchvision"],
                                "index_url": f"{torch_index}/pypi", "indexes": [f"{torch_index}/cu124"]},
                     python="3.12", cuda="12.4")
    wheels = by_name(lock_python(spec))
    assert wheels["torch"].version == "2.13.0+cu124"
    assert wheels["torch"].filename == "torch-2.13.0+cu124-cp312-cp312-manylinux_2_28_x86_64.whl"
    assert wheels["torch"].url.startswith(f"{torch_index}/files/")
    assert wheels["torchvision"].version == "0.28.0+cu124"


def test_torch_for_another_cuda_is_refused(tmp_path: Path, torch_index: str) -> None:
    spec = make_spec(tmp_path, {"requirements": ["torch==2.13.0"], "index_url": f"{torch_index}/pypi",
                                "indexes": [f"{torch_index}/cu124"]}, python="3.12", cuda="12.8")
    with pytest.raises(CudaMismatchError) as err:
        lock_python(spec)
    text = str(err.value)
    assert "CUDA 12.4 build (+cu124)" in text and "target.cuda is 12.8" in text
    assert f"{torch_index}/cu124" in text and "whl/cu128" in text


def test_torchaudio_label_is_checked_too(tmp_path: Path, torch_index: str) -> None:
    spec = make_spec(tmp_path, {"requirements": ["torch==2.13.0", "torchaudio"],
                                "index_url": f"{torch_index}/pypi", "indexes": [f"{torch_index}/cu124"]},
                     python="3.12", cuda="12.4")
    with pytest.raises(CudaMismatchError) as err:
        lock_python(spec)
    assert "torchaudio 2.13.0+cpu" in str(err.value) and "torch 2.13.0+cu124" not in str(err.value)


def _wheel(name: str, version: str) -> WheelLock:
    return WheelLock(name=name, version=version, filename=f"{name}-{version}-py3-none-any.whl",
                     url=f"https://files.pythonhosted.org/{name}.whl", sha256="0" * 64, size=1)


def test_unlabelled_torch_takes_its_cuda_from_the_runtime_dependency() -> None:
    py = PythonSection(requirements=["torch"])
    cu124 = [_wheel("torch", "2.5.1"), _wheel("nvidia-cuda-runtime-cu12", "12.4.127")]
    _check_torch(cu124, Target(python="3.12", cuda="12.4"), py, [])  # matches: no error
    with pytest.raises(CudaMismatchError, match=r"CUDA 12\.4 build.*target.cuda is null"):
        _check_torch(cu124, Target(python="3.12"), py, [])
    with pytest.raises(CudaMismatchError, match=r"torch 2\.13\.0\+cpu.*CPU build.*target.cuda is 12\.4"):
        _check_torch([_wheel("torch", "2.13.0+cpu")], Target(python="3.12", cuda="12.4"), py, [])
    _check_torch([_wheel("torch", "2.13.0+cpu")], Target(python="3.12"), py, [])


def test_best_wheel_for_the_target_is_chosen() -> None:
    base = "https://files.pythonhosted.org/x/"
    pkg = {"name": "cryptography", "version": "50.0.2", "wheels": [
        {"url": base + f, "size": 1, "hashes": {"sha256": str(i) * 64}} for i, f in enumerate([
            "cryptography-50.0.2-cp39-abi3-manylinux_2_28_x86_64.whl",
            "cryptography-50.0.2-cp311-abi3-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
            "cryptography-50.0.2-cp311-abi3-manylinux_2_28_x86_64.whl",
            "cryptography-50.0.2-cp311-abi3-manylinux_2_34_x86_64.whl",
        ])]}
    [w] = _wheels_from_pylock([pkg], Target(python="3.12", manylinux="2_28"))
    assert w.filename == "cryptography-50.0.2-cp311-abi3-manylinux_2_28_x86_64.whl"
    with pytest.raises(NoWheelError, match="cryptography"):
        _wheels_from_pylock([pkg], Target(python="3.12", manylinux="2_28", arch="aarch64"))
