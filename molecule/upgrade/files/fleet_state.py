#!/usr/bin/python3
"""Print, as JSON, what a host of the test fleet runs: the release current and previous name, and for each
Airlock service its state, its systemd invocation id and the release its process runs (AIRLOCK_RELEASE in
/proc/<main pid>/environ). Stdlib only (the host's Python 3.11); run by the upgrade scenario's verify.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = "/opt/airlock"


def link(name: str) -> str | None:
    try:
        return os.path.basename(os.readlink(os.path.join(ROOT, name)))  # noqa: PTH115, PTH118, PTH119
    except OSError:
        return None


def unit(name: str) -> dict[str, str | None]:
    out = subprocess.run(["systemctl", "show", f"{name}.service", "-p", "ActiveState", "-p", "InvocationID",
                          "-p", "MainPID"], capture_output=True, text=True, check=False).stdout
    props = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    release = None
    pid = int(props.get("MainPID") or 0)
    if pid:
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:  # noqa: PTH123
                env = f.read().split(b"\0")
            release = next((e.split(b"=", 1)[1].decode() for e in env if e.startswith(b"AIRLOCK_RELEASE=")), None)
        except OSError:
            pass
    return {"state": props.get("ActiveState"), "invocation": props.get("InvocationID") or None, "release": release}


def main() -> int:
    units = {name: unit(name) for name in sys.argv[1:]}
    print(json.dumps({"current": link("current"), "previous": link("previous"), "units": units}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
