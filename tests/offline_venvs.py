"""Real virtual environments of exact library versions, and a way to run them with no network.

The offline-patch proofs install the released wheels of a library (ModelScope 1.14, FunASR 1.4, ...)
into a venv of their own, cached across test runs under ``AIRLOCK_TEST_VENVS`` (default
``/var/tmp/airlock-tests/venvs``), then run a script in it under ``unshare -n``: a fresh network
namespace with no interface but loopback, so nothing can leave the machine. A ``sitecustomize`` audit
hook logs every connect and name lookup the process attempts, so a test can assert that the patched
library did not even try.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import textwrap
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENVS = Path(os.environ.get("AIRLOCK_TEST_VENVS", "/var/tmp/airlock-tests/venvs"))
#: wheels that are not on the package index (torch +cpu builds) live here on the build machines
FIND_LINKS = [p for p in (Path("/opt/wheels"),) if p.is_dir()]

_AUDIT = textwrap.dedent('''\
    # Logs every network attempt of this process (one JSON line each) to $AIRLOCK_NETLOG.
    import json as _json, os as _os, sys as _sys
    _LOG = _os.environ.get("AIRLOCK_NETLOG")
    def _hook(event, args):
        if not _LOG or event not in ("socket.connect", "socket.getaddrinfo", "socket.sendto"):
            return
        try:
            target = args[1] if event != "socket.getaddrinfo" else args[:2]
            if event != "socket.getaddrinfo" and getattr(args[0], "family", None) == 1:
                return  # AF_UNIX: local, not the network
            with open(_LOG, "a") as fh:
                fh.write(_json.dumps({"event": event, "target": repr(target)}) + "\\n")
        except Exception:
            pass
    _sys.addaudithook(_hook)
''')


@dataclass(frozen=True)
class OfflineRun:
    returncode: int
    stdout: str
    stderr: str
    attempts: list[dict[str, str]]

    def external_attempts(self) -> list[dict[str, str]]:
        """Attempts aimed anywhere but this machine (loopback names and addresses are allowed)."""
        local = ("127.", "'localhost'", "::1", "('localhost'", "('127.", "('::1'")
        return [a for a in self.attempts if not any(s in a["target"] for s in local)]

    def explain(self) -> str:
        return (f"exit {self.returncode}\n--- stdout\n{self.stdout[-4000:]}\n--- stderr\n{self.stderr[-6000:]}\n"
                f"--- network attempts\n{self.attempts}")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def make_venv(name: str, requirements: Sequence[str], *, python: str = "python3",
              extra_pip_args: Sequence[str] = ()) -> Path:
    """A venv with exactly `requirements` installed from the package index, built once and cached.

    The cache key is the name plus a digest of the requirements, so a changed pin builds a new venv.
    Skips the test (not fails) when the index cannot be reached: the proofs need the real wheels.
    """
    key = hashlib.sha256(json.dumps([list(requirements), list(extra_pip_args), python]).encode()).hexdigest()[:12]
    venv = VENVS / f"{name}-{key}"
    done = venv / ".complete"
    with _locked(VENVS / f".{name}-{key}.lock"):
        if done.exists():
            return venv
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        for fl in FIND_LINKS:
            pip += ["--find-links", str(fl)]
        proc = subprocess.run([*pip, *extra_pip_args, *requirements], capture_output=True, text=True)
        if proc.returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)
            if "NewConnectionError" in proc.stderr or "Temporary failure in name resolution" in proc.stderr:
                pytest.skip(f"the package index is unreachable: cannot install {requirements}")
            raise RuntimeError(f"pip install {requirements} failed:\n{proc.stderr[-4000:]}")
        done.write_text(json.dumps(list(requirements)) + "\n")
    return venv


def site_packages(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python3*/site-packages"))
    if len(found) != 1:
        raise RuntimeError(f"{venv}: expected one site-packages, found {found}")
    return found[0]


def copy_venv(venv: Path, dest: Path) -> Path:
    """A private copy of a cached venv to patch (the cache stays pristine). Scripts keep working:
    the copy is used through its own bin/python, and pyvenv.cfg points at the same base Python."""
    shutil.copytree(venv, dest, symlinks=True)
    (dest / ".complete").unlink(missing_ok=True)
    return dest


#: Which releases the offline proofs run: by default a few chosen to cover each kind of edit (the other
#: releases in a patch's range are held to the same files by their hashes, `packager patches check`);
#: ``AIRLOCK_PATCH_PROOFS=all`` runs every release a proof knows (slow: several large venvs).
PROOFS_ENV = "AIRLOCK_PATCH_PROOFS"


def proof_releases(every: Sequence[str], default: Sequence[str]) -> tuple[str, ...]:
    missing = [v for v in default if v not in every]
    if missing:
        raise ValueError(f"default proof releases {missing} are not among {list(every)}")
    return tuple(every) if os.environ.get(PROOFS_ENV, "").lower() == "all" else tuple(default)


def linked_copy(venv: Path, dest: Path, *, real: Sequence[str] = ()) -> Path:
    """A private copy of a cached venv made of hard links (seconds and no space, even for 4 GB).

    Safe to patch: the patchers replace a file by renaming a new one over it (a new inode), and so do
    Python's .pyc writes, so the cached venv never changes. Packages named in `real` are copied for real
    anyway, so that holds whatever writes to them. Falls back to a full copy across file systems.
    """
    if dest.exists():
        shutil.rmtree(dest)
    if subprocess.run(["cp", "-al", str(venv), str(dest)], capture_output=True).returncode != 0:
        shutil.rmtree(dest, ignore_errors=True)
        return copy_venv(venv, dest)
    (dest / ".complete").unlink(missing_ok=True)
    for name in real:
        pkg = site_packages(dest) / name
        tmp = pkg.with_name(f"{name}.airlock-copy")
        shutil.copytree(pkg, tmp, symlinks=True)
        shutil.rmtree(pkg)
        tmp.rename(pkg)
    return dest


def can_unshare() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "-n", "true"], capture_output=True).returncode == 0


def run_offline(venv: Path, script: str, *, env: dict[str, str] | None = None, cwd: Path | None = None,
                timeout: float = 600, workdir: Path) -> OfflineRun:
    """Run `script` with the venv's Python in a network namespace of its own (`unshare -n`).

    Loopback is brought up so a server the script starts can answer on 127.0.0.1. Every socket
    attempt is logged by an audit hook (sitecustomize on PYTHONPATH) and returned.
    """
    if not can_unshare():
        pytest.skip("unshare -n is not available (needs root or user namespaces)")
    hook = workdir / "netaudit"
    hook.mkdir(parents=True, exist_ok=True)
    (hook / "sitecustomize.py").write_text(_AUDIT)
    log = workdir / "netlog.jsonl"
    log.unlink(missing_ok=True)
    (workdir / "script.py").write_text(script)
    full_env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(workdir / "home"),
        "PYTHONPATH": str(hook),
        "AIRLOCK_NETLOG": str(log),
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    (workdir / "home").mkdir(exist_ok=True)
    cmd = ["unshare", "-n", "sh", "-c", 'ip link set lo up 2>/dev/null; exec "$@"', "sh",
           str(venv / "bin" / "python"), str(workdir / "script.py")]
    proc = subprocess.run(cmd, env=full_env, cwd=cwd or workdir, capture_output=True, text=True,
                          timeout=timeout)
    attempts = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return OfflineRun(proc.returncode, proc.stdout, proc.stderr, attempts)


__all__ = [
    "ROOT",
    "OfflineRun",
    "can_unshare",
    "copy_venv",
    "linked_copy",
    "make_venv",
    "proof_releases",
    "run_offline",
    "site_packages",
]
