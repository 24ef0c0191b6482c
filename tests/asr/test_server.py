"""The real server as a process: command line, graceful shutdown, and an offline start under ``unshare -n``."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.asr.conftest import long_speech

ROOT = Path(__file__).resolve().parents[2]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASR_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(base: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(base + "/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("server not ready in time")


def test_cli_rejects_bad_settings(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "services.asr", "--model-dir", str(tmp_path / "nope")],
                       cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "--model-dir" in r.stderr and "not a directory" in r.stderr
    r = subprocess.run([sys.executable, "-m", "services.asr", "--help"], cwd=ROOT, env=_env(),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    for flag in ("--model-dir", "--vad-dir", "--host", "--port", "--api-key", "--workers", "--max-queue",
                 "--batch-size", "--max-upload-bytes", "ASR_MODEL_DIR"):
        assert flag in r.stdout


@pytest.mark.slow
def test_sigterm_finishes_the_request_in_flight(asr_models: tuple[Path, Path], clips: dict[str, bytes]) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    # settings from the environment, as systemd units pass them
    env = _env(ASR_MODEL_DIR=str(asr_models[0]), ASR_VAD_DIR=str(asr_models[1]), ASR_PORT=str(port),
               ASR_LOG_LEVEL="warning")
    proc = subprocess.Popen([sys.executable, "-m", "services.asr"], cwd=ROOT, env=env)
    try:
        _wait_ready(base, proc)
        data = long_speech(clips, 240.0)
        result: dict[str, httpx.Response] = {}

        def send() -> None:
            result["r"] = httpx.post(base + "/v1/audio/transcriptions", files={"file": ("long.wav", data)},
                                     timeout=120)

        t = threading.Thread(target=send)
        t.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # until the request is admitted
            m = httpx.get(base + "/metrics", timeout=5).text
            if re.search(r"^asr_requests_in_progress 1\.0$", m, re.M):
                break
            time.sleep(0.01)
        else:
            raise AssertionError("the request never showed as in progress")
        proc.send_signal(signal.SIGTERM)
        t.join(120)
        r = result["r"]
        assert r.status_code == 200, r.text
        assert len(r.json()["text"]) > 100
        # uvicorn re-raises the SIGTERM it caught once shutdown is done: systemd counts that as a clean stop
        assert proc.wait(60) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


CLIENT = """
import sys, time, json, httpx
base = sys.argv[1]
for _ in range(600):
    try:
        if httpx.get(base + "/ready", timeout=2).status_code == 200:
            break
    except httpx.TransportError:
        pass
    time.sleep(0.2)
r = httpx.post(base + "/v1/audio/transcriptions", files={"file": ("a.wav", open(sys.argv[2], "rb").read())},
               data={"response_format": "verbose_json"}, timeout=60)
print("RESULT", r.status_code, json.dumps(r.json()))
"""

# Records every connection a Python process tries to a non-loopback address (RECIPES.md 7).
SITECUSTOMIZE = """
import os, socket
_log = os.environ["NET_LOG"]
_connect = socket.socket.connect
def _record(self, address):
    host = address[0] if isinstance(address, tuple) else str(address)
    if self.family in (socket.AF_INET, socket.AF_INET6) and not (host.startswith("127.") or host == "::1"):
        with open(_log, "a") as f:
            f.write(f"{host}\\n")
    return _connect(self, address)
socket.socket.connect = _record
"""


@pytest.mark.slow
def test_starts_and_answers_offline(asr_models: tuple[Path, Path], clips: dict[str, bytes], tmp_path: Path) -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("needs root, unshare and ip to cut the network")
    (tmp_path / "client.py").write_text(CLIENT)
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    (tmp_path / "a.wav").write_bytes(clips["c0"])
    net_log = tmp_path / "net.log"
    port = _free_port()
    py = sys.executable
    script = textwrap.dedent(f"""
        ip link set lo up
        PYTHONPATH={tmp_path / "site"}:{ROOT} {py} -m services.asr --model-dir {asr_models[0]} \\
            --vad-dir {asr_models[1]} --port {port} --log-level warning &
        server=$!
        {py} {tmp_path / "client.py"} http://127.0.0.1:{port} {tmp_path / "a.wav"}
        rc=$?
        kill -TERM $server
        wait $server
        echo "SERVER_EXIT $?"
        exit $rc
    """)
    r = subprocess.run(["unshare", "-n", "sh", "-c", script], cwd=ROOT, env=_env(NET_LOG=str(net_log)),
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr
    line = next(x for x in r.stdout.splitlines() if x.startswith("RESULT"))
    assert line.startswith("RESULT 200 ")
    assert '"text": ""' not in line and '"segments": [{' in line
    assert re.search(r"SERVER_EXIT (0|143)$", r.stdout, re.M)
    assert not net_log.exists(), f"network attempts: {net_log.read_text()}"
