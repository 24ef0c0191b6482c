"""The whole online half through the CLI: spec -> lock -> fetch -> signed bundle -> verify -> unpack.

Real parts: wheels from the package index resolved for a target Python that differs from the host's,
the real huggingface_hub and modelscope clients talking to hubs on 127.0.0.1, Debian's minisign.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.hubs import HFHub, MSHub

ROOT = Path(__file__).resolve().parents[1]
SHARED = b'{"shared": "identical in every model"}\n'
CHAT = {"config.json": b'{"model_type": "llama"}\n', "model.safetensors": os.urandom(5000), "shared.json": SHARED}
ASR = {"configuration.json": b'{"task": "auto-speech-recognition"}\n', "model.pt": os.urandom(3000),
       "shared.json": SHARED}
LOCAL = {"weights.bin": os.urandom(2000), "sub/shared.json": SHARED}


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "packager", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=600)


@pytest.fixture
def project(tmp_path: Path, hf_hub: HFHub, ms_hub: MSHub, keypair: tuple[Path, Path]) -> dict[str, Any]:
    hf_hub.add_repo("org/chat", {"main": CHAT})
    ms_hub.add_repo("iic/asr", {"master": ASR})
    local = tmp_path / "spec" / "models" / "mine"
    for rel, data in LOCAL.items():
        (local / rel).parent.mkdir(parents=True, exist_ok=True)
        (local / rel).write_bytes(data)
    spec = {
        "bundle": {"name": "e2e", "version": "2.0.0"},
        "target": {"os": "debian12", "arch": "x86_64", "python": "3.12", "manylinux": "2_28", "cuda": None},
        "python": {"requirements": ["six==1.16.0", "PyYAML==6.0.2", "tomli; python_version < '3.11'"]},
        "models": [
            {"name": "chat", "source": "huggingface", "repo": "org/chat", "revision": "main"},
            {"name": "asr", "source": "modelscope", "repo": "iic/asr", "revision": "master"},
            {"name": "mine", "source": "local", "path": "./models/mine"},
        ],
    }
    spec_path = tmp_path / "spec" / "models.yaml"
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env.update(AIRLOCK_CACHE=str(tmp_path / "cache"), SOURCE_DATE_EPOCH="1700000000", AIRLOCK_PROGRESS="0",
               HF_TOKEN="hf_secret_token_e2e")
    return {"spec": spec_path, "env": env, "key": keypair[0], "pub": keypair[1], "out": tmp_path / "dist",
            "hf": hf_hub, "ms": ms_hub, "tmp": tmp_path}


@pytest.mark.network
def test_build_verify_unpack_rebuild(project: dict[str, Any]) -> None:
    p = project
    r = run(["build", "--models", str(p["spec"]), "--key", str(p["key"]), "--out", str(p["out"])], p["env"], ROOT)
    assert r.returncode == 0, r.stderr
    bundle = p["out"] / "e2e-2.0.0"
    assert r.stdout.strip() == str(bundle)

    # the lock: wheels for cp312 (the host is 3.11), markers evaluated for the target, commits pinned, no token
    lock_text = p["spec"].with_suffix(".lock").read_text()
    assert "hf_secret_token_e2e" not in lock_text
    lock = json.loads(lock_text)
    wheels = {w["name"]: w for w in lock["python"]["wheels"]}
    assert set(wheels) == {"six", "pyyaml"}
    assert "cp312" in wheels["pyyaml"]["filename"] and "manylinux" in wheels["pyyaml"]["filename"]
    models = {m["name"]: m for m in lock["models"]["models"]}
    assert models["chat"]["commit"] == p["hf"].commit_of("org/chat", "main")

    # anyone can check the signature with no code of ours
    if shutil.which("minisign"):
        subprocess.run(["minisign", "-Vm", str(bundle / "manifest.json"), "-p", str(p["pub"])], check=True,
                       capture_output=True)
    r = run(["verify", str(bundle), "--pubkey", str(p["pub"])], p["env"], ROOT)
    assert r.returncode == 0, r.stderr

    manifest = json.loads((bundle / "manifest.json").read_text())
    paths = {f["path"] for f in manifest["files"]}
    assert {"models/chat/shared.json", "models/asr/shared.json", "models/mine/sub/shared.json",
            "meta/models.yaml", "meta/models.lock", f"wheels/{wheels['pyyaml']['filename']}"} <= paths
    blobs = list((bundle / "blobs" / "sha256").iterdir())
    assert len(blobs) == len({f["sha256"] for f in manifest["files"]}) < len(manifest["files"])  # dedup

    r = run(["inspect", str(bundle), "--json", "--pubkey", str(p["pub"])], p["env"], ROOT)
    info = json.loads(r.stdout)
    assert {m["name"]: m["commit"] for m in info["models"]}["chat"] == models["chat"]["commit"]
    assert {x["name"]: x["version"] for x in info["packages"]} == {"six": "1.16.0", "pyyaml": "6.0.2"}

    dest = p["tmp"] / "release"
    r = run(["unpack", str(bundle), str(dest), "--pubkey", str(p["pub"])], p["env"], ROOT)
    assert r.returncode == 0, r.stderr
    for rel, data in CHAT.items():
        assert (dest / "models" / "chat" / rel).read_bytes() == data
    for rel, data in ASR.items():
        assert (dest / "models" / "asr" / rel).read_bytes() == data
    assert (dest / "models" / "mine" / "weights.bin").read_bytes() == LOCAL["weights.bin"]

    # warm rebuild of an unchanged spec: nothing downloaded (the package index is made unreachable through
    # a dead proxy, the hubs' logs show no file transfer) and a byte-identical signed manifest
    first = (bundle / "manifest.json").read_bytes(), (bundle / "manifest.json.minisig").read_bytes()
    p["hf"].clear_log()
    p["ms"].clear_log()
    env = dict(p["env"], HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9",
               NO_PROXY="127.0.0.1,localhost")
    shutil.rmtree(p["out"])
    r = run(["build", "--models", str(p["spec"]), "--key", str(p["key"]), "--out", str(p["out"])], env, ROOT)
    assert r.returncode == 0, r.stderr
    assert ((bundle / "manifest.json").read_bytes(), (bundle / "manifest.json.minisig").read_bytes()) == first
    assert p["hf"].downloads() == [] and p["ms"].downloads() == []


def test_cli_errors_are_clear(project: dict[str, Any]) -> None:
    p = project
    bad = p["spec"].with_name("bad.yaml")
    bad.write_text(p["spec"].read_text().replace("requirements:", "requirement:"))
    r = run(["lock", "--models", str(bad)], p["env"], ROOT)
    assert r.returncode == 2 and "bad.yaml" in r.stderr and "python.requirement: unknown key" in r.stderr

    unknown = p["spec"].with_name("unknown.yaml")
    spec = yaml.safe_load(p["spec"].read_text())
    spec["python"]["requirements"] = []
    spec["models"] = [{"name": "ghost", "source": "huggingface", "repo": "org/ghost"}]
    unknown.write_text(yaml.safe_dump(spec))
    r = run(["lock", "--models", str(unknown)], p["env"], ROOT)
    assert r.returncode == 4 and "ghost" in r.stderr and "org/ghost" in r.stderr

    r = run(["build", "--models", str(p["spec"]), "--key", str(p["pub"])], p["env"], ROOT)
    assert r.returncode == 6 and "secret key" in r.stderr
    assert not p["spec"].with_suffix(".lock").exists()  # a bad key fails before anything is resolved
