"""Packages published only as source distributions, built into wheels at lock time when they are pure Python.

A pure-Python wheel (``py3-none-any``) runs on any target, so building it on the build host is sound. A
package with compiled code is not built here: its wheel must come from a builder with the target's Python
and glibc, and the lock error says so.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from packaging.utils import canonicalize_name

from packager.spec import PythonSection, Target

_BUILD_TIMEOUT_S = 600
# A wheel the lock built from an sdist is recorded under this scheme, not under the path of the build
# machine's cache: any machine rebuilds it from the same sdist (the bytes are reproducible) and checks it.
BUILT_SCHEME = "sdist-build:"
# zip entries carry timestamps: pin them so the same sdist gives the same wheel bytes
_REPRODUCIBLE_EPOCH = "315532800"


@dataclass
class SdistBuilds:
    built: dict[str, Path] = field(default_factory=dict)  # name -> pure wheel
    compiled: dict[str, str] = field(default_factory=dict)  # name -> the platform tag it built for
    failed: dict[str, str] = field(default_factory=dict)  # name -> why it did not build


def _versions(uv: str, *, env: dict[str, str], target: Target, py: PythonSection, find_links: list[str],
              exclude: list[str], tmp: Path) -> dict[str, str]:
    """Resolve with sdists allowed, to learn which version of each sdist-only package the set needs."""
    req = tmp / "sdist-requirements.in"
    req.write_text("\n".join(py.requirements) + "\n", encoding="utf-8")
    cmd = [uv, "pip", "compile", "--no-config", "--quiet", "--no-header", "--no-annotate",
           "--python-version", target.python, "--python-platform", target.python_platform,
           "--index-strategy", "first-index", "--index-url", py.index_url]
    for index in py.indexes:
        cmd += ["--extra-index-url", index]
    for link in find_links:
        cmd += ["--find-links", link]
    if exclude:
        (tmp / "sdist-excludes.txt").write_text("\n".join(exclude) + "\n", encoding="utf-8")
        cmd += ["--excludes", str(tmp / "sdist-excludes.txt")]
    proc = subprocess.run([*cmd, str(req)], capture_output=True, text=True, env=env, cwd=tmp,
                          timeout=_BUILD_TIMEOUT_S, check=False)
    pins: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line.strip())
        if m:
            pins[canonicalize_name(m.group(1))] = m.group(2)
    return pins


def _build(pip: list[str], key: str, version: str, *, py: PythonSection, find_links: list[str], work: Path,
           compilers: bool) -> tuple[Path | None, str]:
    """Build one sdist into ``work``; returns the wheel, or None and why not."""
    cmd = [*pip, "wheel", "--isolated", "--no-deps", "--no-binary", key, "--no-cache-dir", "-q",
           "-w", str(work), "--index-url", py.index_url]
    for index in py.indexes:
        cmd += ["--extra-index-url", index]
    for link in find_links:
        cmd += ["--find-links", link]
    cmd.append(f"{key}=={version}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(SOURCE_DATE_EPOCH=_REPRODUCIBLE_EPOCH, PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    if not compilers:
        env.update(CC="false", CXX="false", LDSHARED="false")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=_BUILD_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"building it failed: {exc}"
    wheels = sorted(work.glob("*.whl")) if work.is_dir() else []
    if proc.returncode != 0 or not wheels:
        return None, "building its sdist failed: " + (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return wheels[0], ""


def build_pure_wheels(uv: str, *, env: dict[str, str], target: Target, py: PythonSection, find_links: list[str],
                      exclude: list[str], names: list[str], out: Path) -> SdistBuilds:
    """Build each of ``names`` from its sdist into ``out``; keep only pure-Python wheels."""
    result = SdistBuilds()
    pip = [sys.executable, "-m", "pip"]
    with tempfile.TemporaryDirectory(prefix="airlock-sdist-") as d:
        tmp = Path(d)
        pins = _versions(uv, env=env, target=target, py=py, find_links=find_links, exclude=exclude, tmp=tmp)
        for name in names:
            key = canonicalize_name(name)
            version = pins.get(key)
            if version is None:
                result.failed[name] = "no version of it could be resolved even from sdists"
                continue
            existing = sorted(out.glob(f"{key.replace('-', '_')}-{version}-*.whl"))
            if existing and existing[0].name.endswith("-none-any.whl"):
                result.built[name] = existing[0]
                continue
            wheel, why = _build(pip, key, version, py=py, find_links=find_links, work=tmp / key, compilers=True)
            if wheel is not None and not wheel.name.endswith("-none-any.whl"):
                # an optional C speed-up (crcmod, say) falls back to pure Python when no compiler runs
                pure, _ = _build(pip, key, version, py=py, find_links=find_links, work=tmp / f"{key}-pure",
                                 compilers=False)
                if pure is None or not pure.name.endswith("-none-any.whl"):
                    result.compiled[name] = wheel.name.rsplit("-", 3)[-1].removesuffix(".whl")
                    continue
                wheel = pure
            if wheel is None:
                result.failed[name] = why
                continue
            out.mkdir(parents=True, exist_ok=True)
            final = out / wheel.name
            shutil.copyfile(wheel, final)
            result.built[name] = final
    return result


def rebuild(name: str, version: str, filename: str, sha256: str, *, py: PythonSection, find_links: list[str],
            out: Path) -> Path:
    """The wheel a lock recorded as built from an sdist: from ``out`` if there, else built again and checked."""
    from packager.errors import FetchError
    from packager.hashing import sha256_file

    final = out / filename
    if final.is_file() and sha256_file(final)[0] == sha256:
        return final
    with tempfile.TemporaryDirectory(prefix="airlock-sdist-") as d:
        pip = [sys.executable, "-m", "pip"]
        for compilers in (True, False):
            wheel, why = _build(pip, canonicalize_name(name), version, py=py, find_links=find_links,
                                work=Path(d) / str(compilers), compilers=compilers)
            if wheel is not None and wheel.name == filename:
                break
        else:
            raise FetchError(f"cannot rebuild {filename} from its sdist: {why or 'it built another wheel'}",
                             where=f"python wheels: {name}", hint="run with --relock")
        found = sha256_file(wheel)[0]
        if found != sha256:
            raise FetchError(f"the rebuilt {filename} differs from the locked one: sha256 {found}, locked {sha256}",
                             where=f"python wheels: {name}",
                             hint="its build is not reproducible here (another setuptools?); run with --relock")
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(wheel, final)
    return final
