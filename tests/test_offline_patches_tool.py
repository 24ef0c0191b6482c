"""roles/offline_patches/files/airlock-patch against a real venv holding a real wheel (idna 3.10).

The venv is built once per session (``python -m venv``, then ``pip install --no-index`` of the wheel, cached
under /var/tmp/airlock-tests/), copied for each test, and patched through the script itself, run as a
subprocess exactly as the role runs it on the hosts.
"""

from __future__ import annotations

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

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "roles" / "offline_patches" / "files" / "airlock-patch"
WHEELS = Path("/var/tmp/airlock-tests/wheels")
WHEEL = WHEELS / "idna-3.10-py3-none-any.whl"

# Only the first run downloads the wheel.
pytestmark = [] if WHEEL.is_file() else [pytest.mark.network]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def run_tool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)], capture_output=True, text=True,
                          timeout=120)


def summary(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout
    out: dict[str, Any] = json.loads(lines[0])
    return out


@pytest.fixture(scope="session")
def wheel() -> Path:
    if not WHEEL.is_file():
        WHEELS.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "idna==3.10", "--no-deps",
                        "--only-binary=:all:", "-d", str(WHEELS)], check=True, timeout=300)
    return WHEEL


@pytest.fixture(scope="session")
def base_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("base") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    # this pip installs into the venv, run by the venv's interpreter (it compiles the .pyc files there)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
                    "--isolated", "--no-index", "--no-deps", str(wheel)], check=True, timeout=300,
                   env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    return venv


@pytest.fixture
def venv(base_venv: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "venv"
    shutil.copytree(base_venv, dst, symlinks=True)
    return dst


def site(venv: Path) -> Path:
    (found,) = venv.glob("lib/python3*/site-packages")
    return found


# (path in site-packages, text appended): the edits the test patches make to the installed files
EDITS = {
    "idna-mark": ("idna/package_data.py", "AIRLOCK_PATCHED = 'mark'\n"),
    "idna-intranges": ("idna/intranges.py", "AIRLOCK_INTRANGES = 1\n"),
}


def write_patches(venv: Path, root: Path, entries: list[dict[str, Any]]) -> Path:
    """A bundle's patches/ folder: entries are {id, distribution, version}; files from EDITS by id."""
    pdir = root / "patches"
    index: dict[str, Any] = {"schema": "airlock-patches/1", "patches": [], "not_needed": [], "unchecked": []}
    for e in entries:
        path, extra = EDITS.get(e["id"], ("idna/package_data.py", "X = 1\n"))
        before = (site(venv) / path).read_bytes()
        after = before + extra.encode()
        for side, data in (("before", before), ("after", after)):
            dst = pdir / e["id"] / side / path
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(data)
            dst.chmod(0o444)  # the release's files are read-only hard links to the store
        index["patches"].append({**e, "summary": "test", "why": "test", "upstream": "none: test",
                                 "diff": f"patches/{e['id']}/fix.diff",
                                 "files": [{"path": path, "before": sha(before), "after": sha(after)}]})
    (pdir / "index.json").write_text(json.dumps(index))
    return pdir


STANDARD = [
    {"id": "idna-mark", "distribution": "idna", "version": "3.10"},
    # any spelling of the name, any PEP 440 spelling of the version
    {"id": "idna-intranges", "distribution": "IDNA", "version": "3.10.0"},
    {"id": "absent-lib-fix", "distribution": "not_installed.lib", "version": "1.0"},
]


def probe(venv: Path) -> dict[str, Any]:
    """What the venv's interpreter imports (through its .pyc files, as a service would)."""
    code = ("import json, idna.package_data as p, idna.intranges as i; print(json.dumps("
            "[getattr(p, 'AIRLOCK_PATCHED', None), getattr(i, 'AIRLOCK_INTRANGES', None), p.__cached__]))")
    out = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, check=True,
                         timeout=60)
    mark, intranges, cached = json.loads(out.stdout)
    return {"mark": mark, "intranges": intranges, "cached": cached}


def snapshot(venv: Path) -> dict[str, tuple[bytes, int, int]]:
    return {str(p.relative_to(venv)): (p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_mode)
            for p in sorted(site(venv).joinpath("idna").rglob("*")) if p.is_file()}


def status(venv: Path, pdir: Path) -> tuple[int, dict[str, Any]]:
    proc = run_tool("status", "--venv", venv, "--patches", pdir, "--json")
    return proc.returncode, json.loads(proc.stdout)


def test_apply_rerun_status_revert(venv: Path, tmp_path: Path) -> None:
    pdir = write_patches(venv, tmp_path, STANDARD)
    pristine = snapshot(venv)
    target = site(venv) / "idna" / "package_data.py"
    mode = target.stat().st_mode
    assert probe(venv)["mark"] is None

    rc, st = status(venv, pdir)
    assert rc == 0 and st["ok"]
    assert st["pending"] == ["idna-mark", "idna-intranges"] and st["applied"] == []
    assert st["not_installed"] == ["absent-lib-fix"]

    out = summary(run_tool("apply", "--venv", venv, "--patches", pdir))
    assert out["changed"] is True
    assert out["patched"] == ["idna-intranges", "idna-mark"]
    assert out["files"] == ["idna/intranges.py", "idna/package_data.py"]
    assert out["not_installed"] == ["absent-lib-fix"]
    assert len(out["compiled"]) == 2  # both modules' .pyc compiled again
    assert target.read_bytes() == (pdir / "idna-mark" / "after" / "idna" / "package_data.py").read_bytes()
    assert target.stat().st_mode == mode
    assert not list(target.parent.glob(".*airlock-tmp"))
    seen = probe(venv)
    assert seen["mark"] == "mark" and seen["intranges"] == 1

    record = venv / ".airlock-patches.json"
    first = record.read_bytes()
    rec = json.loads(first)
    assert rec["patches_dir"] == str(pdir.resolve())
    assert [p["id"] for p in rec["patches"]] == ["idna-intranges", "idna-mark"]
    assert "time" not in first.decode() and "applied_at" not in first.decode()
    record_mtime = record.stat().st_mtime_ns
    patched = snapshot(venv)

    again = summary(run_tool("apply", "--venv", venv, "--patches", pdir))
    assert again["changed"] is False
    assert again["patched"] == [] and again["already_applied"] == ["idna-intranges", "idna-mark"]
    assert record.read_bytes() == first and record.stat().st_mtime_ns == record_mtime
    assert snapshot(venv) == patched  # not a byte, not a .pyc touched

    rc, st = status(venv, pdir)
    assert rc == 0 and st["ok"] and st["record"] == str(record)
    assert st["applied"] == ["idna-mark", "idna-intranges"] and st["pending"] == [] and st["drifted"] == []
    assert all(p["recorded"] for p in st["patches"] if p["state"] == "applied")

    rev = summary(run_tool("revert", "--venv", venv))  # the patches folder comes from the record
    assert rev["changed"] is True and rev["reverted"] == ["idna-intranges", "idna-mark"]
    assert not record.exists()
    assert {k: v[0] for k, v in snapshot(venv).items() if k.endswith(".py")} == {
        k: v[0] for k, v in pristine.items() if k.endswith(".py")}
    assert target.stat().st_mode == mode
    assert probe(venv)["mark"] is None
    assert summary(run_tool("revert", "--venv", venv, "--patches", pdir))["changed"] is False
    rc, st = status(venv, pdir)
    assert st["pending"] == ["idna-mark", "idna-intranges"]


@pytest.mark.parametrize("mode", ["unchecked-hash", "checked-hash"])
def test_hash_based_pyc_is_compiled_again(venv: Path, tmp_path: Path, mode: str) -> None:
    """An unchecked-hash .pyc is never compared with its source: left stale, the old code would run."""
    subprocess.run([str(venv / "bin" / "python"), "-m", "compileall", "-q", "-f", "--invalidation-mode", mode,
                    str(site(venv) / "idna")], check=True, timeout=120)
    pdir = write_patches(venv, tmp_path, STANDARD)
    pyc = Path(probe(venv)["cached"])
    flags = pyc.read_bytes()[4:8]
    summary(run_tool("apply", "--venv", venv, "--patches", pdir))
    assert probe(venv)["mark"] == "mark"
    assert pyc.read_bytes()[4:8] == flags  # same invalidation mode as before
    summary(run_tool("revert", "--venv", venv))
    assert probe(venv)["mark"] is None


def test_drifted_file_refuses_everything(venv: Path, tmp_path: Path) -> None:
    pdir = write_patches(venv, tmp_path, STANDARD)
    edited = site(venv) / "idna" / "intranges.py"
    edited.write_bytes(edited.read_bytes().replace(b"import bisect", b"import bisect  # edited by hand"))
    found = sha(edited.read_bytes())
    entry = json.loads((pdir / "index.json").read_text())["patches"][1]["files"][0]
    before = snapshot(venv)

    proc = run_tool("apply", "--venv", venv, "--patches", pdir)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout == ""
    msg = proc.stderr
    assert "nothing was changed" in msg
    assert "IDNA 3.10.0" in msg and "idna/intranges.py" in msg and "idna-intranges" in msg
    assert found in msg and entry["before"] in msg and entry["after"] in msg
    # the other patch's file was fine, and it too is left alone
    assert snapshot(venv) == before
    assert not (venv / ".airlock-patches.json").exists()

    rc, st = status(venv, pdir)
    assert rc == 2 and not st["ok"]
    assert st["drifted"] == ["idna-intranges"] and st["pending"] == ["idna-mark"]
    (bad,) = [f for p in st["patches"] for f in p["files"] if f["state"] == "drifted"]
    assert bad == {"path": "idna/intranges.py", "state": "drifted", "found": found}
    table = run_tool("status", "--venv", venv, "--patches", pdir)
    assert table.returncode == 2 and "drifted" in table.stdout and found in table.stdout


def test_drift_after_apply_blocks_revert(venv: Path, tmp_path: Path) -> None:
    pdir = write_patches(venv, tmp_path, STANDARD)
    summary(run_tool("apply", "--venv", venv, "--patches", pdir))
    (site(venv) / "idna" / "package_data.py").write_text("__version__ = 'other'\n")
    before = snapshot(venv)
    proc = run_tool("revert", "--venv", venv)
    assert proc.returncode == 2 and "idna/package_data.py" in proc.stderr
    assert snapshot(venv) == before  # intranges.py stays patched: nothing half-reverted
    assert (venv / ".airlock-patches.json").exists()


def test_missing_file_is_drift(venv: Path, tmp_path: Path) -> None:
    pdir = write_patches(venv, tmp_path, STANDARD[:1])
    (site(venv) / "idna" / "package_data.py").unlink()
    proc = run_tool("apply", "--venv", venv, "--patches", pdir)
    assert proc.returncode == 2 and "idna/package_data.py (patch idna-mark) is missing" in proc.stderr


def test_other_version_installed_is_an_error(venv: Path, tmp_path: Path) -> None:
    pdir = write_patches(venv, tmp_path, [STANDARD[0], {"id": "old-idna", "distribution": "Idna", "version": "3.9"}])
    before = snapshot(venv)
    proc = run_tool("apply", "--venv", venv, "--patches", pdir)
    assert proc.returncode == 2
    assert "old-idna" in proc.stderr and "Idna 3.9" in proc.stderr and "Idna 3.10" in proc.stderr
    assert "disagree" in proc.stderr
    assert snapshot(venv) == before
    rc, st = status(venv, pdir)
    assert rc == 2 and st["other_version"] == ["old-idna"]
    (p,) = [p for p in st["patches"] if p["id"] == "old-idna"]
    assert p["installed"] == ["3.10"]


def test_tampered_bundle_copy_is_refused(venv: Path, tmp_path: Path) -> None:
    pdir = write_patches(venv, tmp_path, STANDARD)
    after = pdir / "idna-intranges" / "after" / "idna" / "intranges.py"
    after.chmod(0o644)
    after.write_bytes(after.read_bytes() + b"import os; os.system('true')\n")
    before = snapshot(venv)
    proc = run_tool("apply", "--venv", venv, "--patches", pdir)
    assert proc.returncode == 2 and "after copy" in proc.stderr and str(after) in proc.stderr
    assert snapshot(venv) == before


def test_partly_applied_patch_is_completed(venv: Path, tmp_path: Path) -> None:
    pdir = write_patches(venv, tmp_path, STANDARD)
    shutil.copyfile(pdir / "idna-mark" / "after" / "idna" / "package_data.py",
                    site(venv) / "idna" / "package_data.py")
    rc, st = status(venv, pdir)
    assert rc == 0 and st["applied"] == ["idna-mark"] and st["pending"] == ["idna-intranges"]
    out = summary(run_tool("apply", "--venv", venv, "--patches", pdir))
    assert out["changed"] and out["files"] == ["idna/intranges.py"] and out["already_applied"] == ["idna-mark"]
    assert probe(venv) | {"cached": None} == {"mark": "mark", "intranges": 1, "cached": None}


def test_nothing_installed_writes_nothing(venv: Path, tmp_path: Path) -> None:
    pdir = write_patches(venv, tmp_path, STANDARD[2:])
    out = summary(run_tool("apply", "--venv", venv, "--patches", pdir))
    assert out["changed"] is False and out["not_installed"] == ["absent-lib-fix"] and out["record"] is None
    assert not (venv / ".airlock-patches.json").exists()


@pytest.mark.parametrize("mutate", [
    lambda e: e.update(id="../escape"),
    lambda e: e["files"][0].update(path="../../../etc/passwd"),
    lambda e: e["files"][0].update(path="/etc/passwd"),
    lambda e: e["files"][0].update(before="abc"),
])
def test_malformed_index_is_refused(venv: Path, tmp_path: Path, mutate: Callable[[dict[str, Any]], None]) -> None:
    pdir = write_patches(venv, tmp_path, STANDARD[:1])
    index = json.loads((pdir / "index.json").read_text())
    mutate(index["patches"][0])
    (pdir / "index.json").write_text(json.dumps(index))
    before = snapshot(venv)
    proc = run_tool("apply", "--venv", venv, "--patches", pdir)
    assert proc.returncode == 2 and "nothing was changed" in proc.stderr
    assert snapshot(venv) == before


def test_not_a_venv_or_no_index(tmp_path: Path, venv: Path) -> None:
    proc = run_tool("apply", "--venv", tmp_path / "nope", "--patches", tmp_path)
    assert proc.returncode == 2 and "index.json" in proc.stderr
    pdir = write_patches(venv, tmp_path, STANDARD[:1])
    proc = run_tool("status", "--venv", tmp_path / "nope", "--patches", pdir)
    assert proc.returncode == 2 and "not a venv" in proc.stderr


def test_tool_runs_on_the_hosts_system_python() -> None:
    assert os.access(TOOL, os.X_OK)
    assert TOOL.read_text().splitlines()[0] == "#!/usr/bin/python3"
    proc = run_tool("--help")
    assert proc.returncode == 0 and "apply" in proc.stdout and "revert" in proc.stdout and "status" in proc.stdout
