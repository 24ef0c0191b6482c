"""``patches check``: the tiny idna catalogue proved against the real releases on PyPI (range requests, only the
files the patch names), and against a local index that ignores Range and lists a yanked release."""

from __future__ import annotations

import http.server
import io
import json
import shutil
import subprocess
import sys
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest

from packager.patching.check import check_catalog, read_members, render_report
from packager.patching.meta import load_catalog
from tests.test_patching import FILES, ROOT, idna_wheel, write_patch  # noqa: F401 (idna_wheel: a fixture)

EVIDENCE = {"file": "idna/compat.py", "contains": "def nameprep"}


@pytest.mark.network
def test_check_against_pypi(tmp_path: Path) -> None:
    # 3.9 and 3.10 in one variant: 3.9 ships another idna/package_data.py, so its before hash differs
    cat = write_patch(tmp_path / "cat", versions=">=3.9,<=3.10", fixed=[{"versions": "==3.8", "evidence": EVIDENCE}])
    report = check_catalog(load_catalog([cat]))
    (p,) = report.patches
    assert p.problems == ()
    got = {r.version: (r.kind, r.wheel, r.problems) for r in p.releases}
    assert set(got) == {"3.8", "3.9", "3.10"}
    assert got["3.8"] == ("fixed", "idna-3.8-py3-none-any.whl", ())
    assert got["3.10"] == ("variant", "idna-3.10-py3-none-any.whl", ())
    kind, wheel, problems = got["3.9"]
    assert (kind, wheel) == ("variant", "idna-3.9-py3-none-any.whl")
    assert len(problems) == 1 and problems[0].startswith(
        f"idna/package_data.py: before hash differs: expected {FILES['idna/package_data.py']['before']}, found ")
    # every release after 3.10 is in no range: reported, an error only when strict
    assert "3.11" in p.unchecked_newer and "3.10" not in p.unchecked_newer
    errors = report.errors()
    assert errors == [f"idna-nameprep: idna 3.9: {problems[0]}"]
    assert any("idna 3.11: unchecked newer release" in e for e in report.errors(strict=True))
    text = render_report(report)
    assert "3.9" in text and "FAILED" in text and "unchecked newer release(s): 3.11" in text

    # only the central directory and the members travel: a few range requests, not the whole wheel
    with httpx.Client(follow_redirects=True, timeout=60) as c:
        r = c.get("https://pypi.org/pypi/idna/json")
        (url,) = [urljoin(str(r.url), u["url"]) for u in r.json()["releases"]["3.10"] if u["filename"].endswith(".whl")]
        members, requests = read_members(c, url, ["idna/package_data.py", "idna/nope.py"])
    assert members == {"idna/package_data.py": b'__version__ = "3.10"\n', "idna/nope.py": None}
    assert requests <= 3


@pytest.mark.network
def test_check_cli_reports_and_fails(tmp_path: Path) -> None:
    cat = write_patch(tmp_path / "cat", versions="==3.10", fixed=[{"versions": "==3.8", "evidence": EVIDENCE}])
    args = [sys.executable, "-m", "packager", "patches", "check", "--catalog", str(cat), "--only", "idna-nameprep"]
    r = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "2 release(s) checked, 0 problem(s)" in r.stdout
    r = subprocess.run([*args, "--strict"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 10 and "idna 3.11: unchecked newer release" in r.stderr
    r = subprocess.run([*args[:-1], "no-such-patch"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 10 and "no patch no-such-patch" in r.stderr


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def local_index(tmp_path: Path, idna_wheel: Path) -> Iterator[tuple[str, Path]]:  # noqa: F811 (the fixture)
    """A JSON API index served by http.server, which ignores Range (always the whole file, 200)."""
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: _Quiet(*a, directory=str(root)))
    base = f"http://127.0.0.1:{server.server_address[1]}"
    shutil.copy(idna_wheel, root / idna_wheel.name)
    # an sdist with the wheel's files under idna-3.10.2/ (a release published without a wheel is read from it)
    with zipfile.ZipFile(idna_wheel) as zf, tarfile.open(root / "y.tar.gz", "w:gz") as tar:
        for name in zf.namelist():
            if name.startswith("idna/"):
                data = zf.read(name)
                info = tarfile.TarInfo(f"idna-3.10.2/{name}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    whl = {"filename": idna_wheel.name, "url": f"{base}/{idna_wheel.name}", "yanked": False}
    releases = {
        "3.10": [whl, {"filename": "idna-3.10.tar.gz", "url": f"{base}/x.tar.gz", "yanked": False}],
        "3.10.1": [{**whl, "yanked": True}],  # inside the range, but yanked: skipped and listed
        "3.10.2": [{"filename": "idna-3.10.2.tar.gz", "url": f"{base}/y.tar.gz", "yanked": False}],  # no wheel
        "3.10.3": [{"filename": "idna-3.10.3.zip", "url": f"{base}/z.zip", "yanked": False}],  # nothing readable
        "3.12": [whl],
    }
    (root / "pypi" / "idna").mkdir(parents=True)
    (root / "pypi" / "idna" / "json").write_text(json.dumps({"releases": releases}))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield base, root
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.network
def test_check_local_index_without_range(tmp_path: Path, local_index: tuple[str, Path]) -> None:
    base, _ = local_index
    cat = write_patch(tmp_path / "cat", versions=">=3.10,<3.11")
    with httpx.Client() as c:
        members, requests = read_members(c, f"{base}/idna-3.10-py3-none-any.whl", ["idna/compat.py"])
    assert requests == 1 and members["idna/compat.py"] is not None  # the whole file came at once, and was used
    (p,) = check_catalog(load_catalog([cat]), base).patches
    assert [(r.version, r.problems) for r in p.releases] == [
        ("3.10", ()), ("3.10.2", ()),
        ("3.10.3", ("no py3, cp311 or abi3 manylinux x86_64 wheel and no sdist to check",))]
    assert [r.wheel for r in p.releases][:2] == ["idna-3.10-py3-none-any.whl", "idna-3.10.2.tar.gz"]
    assert p.yanked == ("3.10.1",)
    assert p.unchecked_newer == ("3.12",)
