"""Offline phase: ``modelscope server --model_id MODEL_ID [ARGS...]`` on loopback, then /describe and /call.

Prints one ``RESULT {json}`` line: the answers (when the server came up), the server's exit status and the
tail of its output. Imports nothing from this repository.
"""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

model_id, extra = sys.argv[1], sys.argv[2:]
TEXT = "i like this wonderful place"

with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
base = f"http://127.0.0.1:{port}"
log_path = Path("server.log").resolve()
# the `modelscope` console script, run by this Python (a copied venv's bin/modelscope names the original's)
LAUNCH = ("import importlib.metadata as m, sys; (ep,) = m.entry_points(group='console_scripts', name='modelscope'); "
          "sys.argv[0] = 'modelscope'; sys.exit(ep.load()())")
args = ["server", "--model_id", model_id, "--host", "127.0.0.1", "--port", str(port), *extra]
cmd = [sys.executable, "-c", LAUNCH, *args]
result = {"cmd": ["modelscope", *args]}
with log_path.open("wb") as log:
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + float(os.environ.get("SERVER_START_TIMEOUT", "300"))
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(base + "/describe", timeout=10) as r:
                result["describe"] = json.load(r)
            break
        except OSError:
            time.sleep(0.5)
    if "describe" in result:
        req = urllib.request.Request(base + "/call", data=json.dumps({"input": {"text": TEXT}}).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                result["call"] = json.load(r)
        except OSError as e:
            result["call_error"] = repr(e)
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
result["exit"] = proc.returncode
result["log"] = log_path.read_text(errors="replace")[-6000:]
print("RESULT " + json.dumps(result))
