"""The offline deploy (site.yml and its stage playbooks), driven through ansible-runner against two real
systemd hosts: podman containers with no network at all, reached with the containers.podman connection.

The fleet and the bundles are built once for the module and the tests run in file order, each moving the
fleet one bundle version on: v1.0.0 first converge and idempotent rerun, v1.1.0 as a dry run (--check)
and then with a blob corrupted on one host, v1.2.0 with a host frozen mid-run, v1.3.0 with a disk full.
Each test first brings the fleet to the release it starts from (a no-op in file order), so a single test
also runs alone, only slower. Every failure is asserted from ansible-runner's event stream, per host and
per task, and then on the hosts themselves.

Needs root, podman and the image localhost/airlock-debian-systemd:12 (scripts/setup-fleet.sh makes both),
and the package index for the test bundles' wheel (or a warm ~/.cache/airlock). Writes the first-converge
and rerun timings to bench/results/deploy.json.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
IMAGE = "localhost/airlock-debian-systemd:12"
GPU1, GPU2 = "airlock-t-gpu1", "airlock-t-gpu2"
HOSTS = (GPU1, GPU2)
BUILD_BUNDLE = ROOT / "molecule" / "resources" / "build_bundle.py"
TEST_PUB = ROOT / "molecule" / "resources" / "keys" / "test.pub"
AIRLOCK = "/opt/airlock"
VERSIONS = ("1.0.0", "1.1.0", "1.2.0", "1.3.0")
# Task names of the bundle role that the assertions look for.
TRANSFER = "Transfer the missing blobs"  # large blobs one by one (and every blob in check mode)
BATCH = "Transfer the archive and unpack it into the incoming folder"  # small blobs together
UNPACK = "Check every received blob's digest and unpack the release"
ACTIVATE = "Switch current to the release and prune old releases"
SCRATCH_CLEANUP = "Remove the scratch folder"  # the last verify task, on the control node only
# Every bundle-role task that touches a host (what must never run for a bundle that does not verify).
HOST_SIDE = {"Create Airlock's folders", "Copy the verified manifest", "Work out which blobs this host still needs",
             TRANSFER, BATCH, "Pack the small missing blobs on the control node", "Archive them", UNPACK, ACTIVATE}
PODMAN = shutil.which("podman")

pytestmark = [pytest.mark.deploy, pytest.mark.network, pytest.mark.slow]


# -- helpers: podman --------------------------------------------------------------------------------------
def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    assert PODMAN is not None
    return subprocess.run([PODMAN, *args], capture_output=True, text=True, check=check, timeout=timeout)


def sh(host: str, script: str, *, check: bool = True) -> str:
    """Run a shell script as root on a host (podman exec); return its stdout."""
    p = podman("exec", host, "sh", "-c", script, check=False)
    if check and p.returncode != 0:
        raise AssertionError(f"{host}: `{script}` exited {p.returncode}: {p.stderr.strip()}")
    return p.stdout


def current(host: str) -> str:
    return sh(host, f"readlink {AIRLOCK}/current || true").strip()


def releases(host: str) -> list[str]:
    """Everything under releases/, dot entries (half-built releases) included."""
    return sorted(sh(host, f"ls -A {AIRLOCK}/releases 2>/dev/null || true").split())


def image_present() -> bool:
    return PODMAN is not None and podman("image", "exists", IMAGE, check=False).returncode == 0


def start_host(name: str) -> None:
    podman("rm", "-f", "-t", "0", name, check=False)  # a leftover of an interrupted run (only our names)
    podman("run", "-d", "--name", name, "--hostname", name, "--cap-add", "SYS_ADMIN", "--systemd=always",
           "--network=none", IMAGE, "/sbin/init")


def wait_booted(name: str, deadline_s: float = 90) -> str:
    """systemctl is-system-running --wait; it can answer empty right after the start: retry."""
    end = time.monotonic() + deadline_s
    state = ""
    while time.monotonic() < end:
        p = podman("exec", name, "systemctl", "is-system-running", "--wait", check=False, timeout=deadline_s)
        state = p.stdout.strip()
        if state in ("running", "degraded"):
            return state
        time.sleep(0.5)
    raise AssertionError(f"{name}: systemd did not finish booting in {deadline_s:.0f} s (state {state!r})")


def remove_host(name: str) -> None:
    podman("unpause", name, check=False)
    podman("rm", "-f", "-t", "0", name, check=False)


# -- helpers: bundles -------------------------------------------------------------------------------------
def build_bundle(out: Path, version: str) -> Path:
    """A lean signed test bundle (one wheel, three tiny models). Each version after 1.0.0 carries a new
    64 KB file in the local model, so it adds blobs that a host must receive."""
    cmd = [sys.executable, str(BUILD_BUNDLE), str(out), "--version", version, "--requirement", "packaging"]
    if version != "1.0.0":
        cmd += ["--extra-file", "changelog.txt=" + f"release {version}: one more file for the notes model\n" * 1300]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert p.returncode == 0, f"build_bundle.py {version} failed:\n{p.stderr[-3000:]}"
    return Path(p.stdout.strip().splitlines()[-1])


def manifest_files(bundle: Path) -> dict[str, str]:
    """Logical path -> sha256 of a bundle's signed manifest."""
    data = json.loads((bundle / "manifest.json").read_text())
    return {f["path"]: f["sha256"] for f in data["files"]}


# -- helpers: ansible-runner ------------------------------------------------------------------------------
RESULT_EVENTS = {"runner_on_ok", "runner_on_failed", "runner_on_unreachable", "runner_on_skipped",
                 "runner_item_on_ok", "runner_item_on_failed", "runner_item_on_skipped"}


@dataclass
class TaskOutcome:
    changed: bool = False
    failed: bool = False
    unreachable: bool = False
    msg: str = ""
    duration: float = 0.0


def summarise(events: list[dict[str, Any]]) -> dict[tuple[str, str], TaskOutcome]:
    """{(host, task name): what happened}, from ansible-runner's events (loop items folded in)."""
    out: dict[tuple[str, str], TaskOutcome] = {}
    for ev in events:
        kind, data = ev.get("event"), ev.get("event_data") or {}
        if kind not in RESULT_EVENTS or not data.get("host"):
            continue
        t = out.setdefault((data["host"], data.get("task") or ""), TaskOutcome())
        res = data.get("res") or {}
        t.changed |= bool(res.get("changed"))
        bad = kind in ("runner_on_failed", "runner_item_on_failed") and not data.get("ignore_errors")
        t.failed |= bad
        t.unreachable |= kind == "runner_on_unreachable"
        if (bad or kind == "runner_on_unreachable") and res.get("msg"):
            t.msg += ("\n" if t.msg else "") + str(res["msg"])
        if kind.startswith("runner_on_") and data.get("duration") is not None:
            t.duration += float(data["duration"])
    return out


@dataclass
class Run:
    status: str
    rc: int
    wall_s: float
    tasks: dict[tuple[str, str], TaskOutcome]
    stdout: str
    events: list[dict[str, Any]] = field(default_factory=list)

    def host(self, host: str) -> dict[str, TaskOutcome]:
        return {task: t for (h, task), t in self.tasks.items() if h == host}

    def failed(self, host: str) -> bool:
        return any(t.failed or t.unreachable for t in self.host(host).values())

    def unreachable(self, host: str) -> bool:
        return any(t.unreachable for t in self.host(host).values())

    def changed(self, host: str | None = None) -> list[tuple[str, str]]:
        return sorted(k for k, t in self.tasks.items() if t.changed and (host is None or k[0] == host))

    def messages(self, host: str | None = None) -> str:
        return "\n".join(t.msg for (h, _), t in sorted(self.tasks.items()) if t.msg and host in (None, h))

    def why(self) -> str:
        """Context for an assertion message: status, failures and the end of the output."""
        return (f"status {self.status} rc {self.rc}\nfailures:\n{self.messages()}\n"
                f"--- output tail ---\n{self.stdout[-4000:]}")


def sent(run: Run, host: str) -> bool:
    """Whether the run transferred blobs to ``host``, in the archive of small ones or one by one."""
    return bool({(host, BATCH), (host, TRANSFER)} & set(run.changed(host)))


@dataclass
class Fleet:
    work: Path
    inventory: Path
    bundles: dict[str, Path]
    runs: int = 0

    def run(self, playbook: str = "site.yml", version: str | None = "1.0.0", *, check: bool = False,
            limit: str | None = None, extravars: dict[str, Any] | None = None,
            on_event: Callable[[dict[str, Any]], None] | None = None,
            envvars: dict[str, str] | None = None) -> Run:
        """Run a playbook of the repo with ansible-runner; version picks bundle_src (None: leave it to
        extravars). Returns the per-host, per-task outcome."""
        import ansible_runner  # type: ignore[import-untyped]

        self.runs += 1
        pdd = self.work / f"runner-{self.runs:02d}"
        pdd.mkdir()
        ev: dict[str, Any] = dict(extravars or {})
        if version is not None:
            ev.setdefault("bundle_src", str(self.bundles[version]))
        events: list[dict[str, Any]] = []

        def handler(event: dict[str, Any]) -> bool:
            events.append(event)
            if on_event is not None:
                on_event(event)
            return True

        env = {
            "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
            "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
            "ANSIBLE_LOCAL_TEMP": str(pdd / "tmp"),
            "ANSIBLE_NOCOLOR": "1",
            # ansible-playbook of this venv (ansible-runner finds it on PATH)
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            **(envvars or {}),
        }
        t0 = time.monotonic()
        r = ansible_runner.run(
            private_data_dir=str(pdd), playbook=str(ROOT / playbook), inventory=str(self.inventory),
            extravars=ev, envvars=env, cmdline="--check --diff" if check else None, limit=limit,
            event_handler=handler,
            quiet=True, timeout=900,
        )
        wall = time.monotonic() - t0
        stdout = r.stdout.read() if r.stdout else ""
        return Run(status=r.status, rc=r.rc, wall_s=wall, tasks=summarise(events), stdout=stdout, events=events)

    def bring_to(self, version: str, hosts: tuple[str, ...] = HOSTS) -> None:
        """Precondition of a test: `current` is `version` on every host (converges only where it is not)."""
        behind = [h for h in hosts if current(h) != f"releases/{version}"]
        if behind:
            r = self.run(version=version, limit=",".join(behind))
            assert r.status == "successful", r.why()
        for h in hosts:
            assert current(h) == f"releases/{version}"


# -- fixtures ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    pytest.importorskip("ansible_runner", reason="ansible-runner is not installed (scripts/setup.sh installs it)")
    if PODMAN is None:
        pytest.skip("podman is not installed: scripts/setup-fleet.sh (run by scripts/setup.sh) installs it")
    if not image_present():
        pytest.skip(f"podman image {IMAGE} is missing (or podman is not rootful): run scripts/setup-fleet.sh as root")
    work = Path(tempfile.mkdtemp(prefix="airlock-t-deploy-", dir="/var/tmp"))
    try:
        for h in HOSTS:
            start_host(h)
        bundles = {v: build_bundle(work / "bundles", v) for v in VERSIONS}  # while systemd boots
        for h in HOSTS:
            wait_booted(h)
        pub = TEST_PUB.read_text().strip().splitlines()[-1]
        inventory = work / "inventory.yml"
        inventory.write_text(json.dumps({  # JSON is YAML
            "airlock_fleet": {
                "children": {"gpu_workers": {"hosts": {h: {} for h in HOSTS}}},
                "vars": {
                    "ansible_connection": "containers.podman.podman",
                    "ansible_python_interpreter": "/usr/bin/python3",
                    "bundle_pubkeys": [pub],
                },
            },
        }, indent=2))
        yield Fleet(work=work, inventory=inventory, bundles=bundles)
    finally:
        for h in HOSTS:
            remove_host(h)
        shutil.rmtree(work, ignore_errors=True)


# -- tests ------------------------------------------------------------------------------------------------
def test_first_converge_then_rerun_changes_nothing(fleet: Fleet) -> None:
    for h in HOSTS:
        assert current(h) == "", f"{h} is not a fresh host"
    first = fleet.run(version="1.0.0")
    assert first.status == "successful", first.why()
    for h in HOSTS:
        assert not first.failed(h), first.why()
        assert sent(first, h) and (h, ACTIVATE) in first.changed(h)
        assert current(h) == "releases/1.0.0"
        assert "1.0.0" in releases(h)
        out = sh(h, f"{AIRLOCK}/current/venv/bin/python -c 'import packaging; print(packaging.__version__)'")
        assert f"wheels/packaging-{out.strip()}-py3-none-any.whl" in manifest_files(fleet.bundles["1.0.0"]), out

    rerun = fleet.run(version="1.0.0")
    assert rerun.status == "successful", rerun.why()
    assert rerun.changed() == [], f"not idempotent, changed on the rerun: {rerun.changed()}"
    assert {h for h, _ in rerun.tasks} == set(HOSTS)

    files = json.loads((fleet.bundles["1.0.0"] / "manifest.json").read_text())["files"]
    blobs = {f["sha256"]: f["size"] for f in files}
    slowest = sorted(((t.duration, task) for (h, task), t in first.tasks.items() if h == GPU1), reverse=True)[:5]
    result = {
        "hosts": len(HOSTS),
        "connection": "containers.podman.podman (podman exec, systemd containers, --network=none)",
        "bundle": {"files": len(files), "blobs": len(blobs), "bytes": sum(blobs.values())},
        "first_converge_s": round(first.wall_s, 1),
        "rerun_s": round(rerun.wall_s, 1),
        "rerun_changed": len(rerun.changed()),
        "first_converge_slowest_tasks_s": {task: round(d, 1) for d, task in slowest},
        "cpus": os.cpu_count(),
        "load_avg_1m_after": round(os.getloadavg()[0], 2),
    }
    out_path = ROOT / "bench" / "results" / "deploy.json"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def test_check_mode_reports_the_new_release_and_changes_nothing(fleet: Fleet) -> None:
    fleet.bring_to("1.0.0")
    store_before = {h: sh(h, f"ls -A {AIRLOCK}/store/sha256 {AIRLOCK}/store/manifests {AIRLOCK}/store/incoming")
                    for h in HOSTS}
    r = fleet.run(version="1.1.0", check=True)
    assert r.status == "successful", r.why()
    new = set(manifest_files(fleet.bundles["1.1.0"]).values()) - set(manifest_files(fleet.bundles["1.0.0"]).values())
    for h in HOSTS:
        assert not r.failed(h), r.why()
        changed = {task for _, task in r.changed(h)}
        assert {TRANSFER, UNPACK, ACTIVATE} <= changed, f"{h}: check mode reported only {changed}"
        assert current(h) == "releases/1.0.0"
        assert releases(h) == ["1.0.0"]
        assert sh(h, f"ls -A {AIRLOCK}/store/sha256 {AIRLOCK}/store/manifests {AIRLOCK}/store/incoming") \
            == store_before[h], f"{h}: the store changed in check mode"
        # the transfer it announces is exactly the new blobs: a dry run plans from the host's real store
        announced = {(ev["event_data"].get("res") or {}).get("item") for ev in r.events
                     if ev.get("event") == "runner_item_on_ok" and ev["event_data"].get("host") == h
                     and ev["event_data"].get("task") == TRANSFER}
        assert announced == new, f"{h}: check mode announced {announced}, the new blobs are {new}"


def test_untrusted_key_is_refused_on_the_control_node(fleet: Fleet) -> None:
    before = {h: (current(h), releases(h)) for h in HOSTS}
    other = fleet.work / "other"
    env = {k: v for k, v in os.environ.items() if k != "PACKAGER_KEY_PASSWORD"}  # an unencrypted key
    subprocess.run([sys.executable, "-m", "packager", "keygen", "--out", str(other)], check=True,
                   capture_output=True, env=env, timeout=60)
    pub = Path(str(other) + ".pub").read_text().strip().splitlines()[-1]
    r = fleet.run(version="1.1.0", extravars={"bundle_pubkeys": [pub]})
    assert r.status == "failed", r.why()
    print(r.messages())
    assert "not a trusted key" in r.messages(), r.why()
    assert str(fleet.bundles["1.1.0"]) in r.messages()
    assert r.changed() == [], f"a host was changed although the bundle was refused: {r.changed()}"
    ran = {task for _, task in r.tasks}
    assert not ran & HOST_SIDE, f"host-side tasks ran after a refused bundle: {ran & HOST_SIDE}"
    assert {h: (current(h), releases(h)) for h in HOSTS} == before


def test_missing_bundle_is_named(fleet: Fleet) -> None:
    before = {h: (current(h), releases(h)) for h in HOSTS}
    missing = fleet.work / "no-such-bundle-1.9.9"
    r = fleet.run(version=None, extravars={"bundle_src": str(missing)})
    assert r.status == "failed", r.why()
    print(r.messages())
    assert str(missing) in r.messages(), r.why()
    assert r.changed() == []
    assert not {task for _, task in r.tasks} & HOST_SIDE
    assert {h: (current(h), releases(h)) for h in HOSTS} == before


def test_corrupt_blob_on_one_host_fails_only_that_host_and_heals_on_rerun(fleet: Fleet) -> None:
    fleet.bring_to("1.0.0")
    v1, v11 = manifest_files(fleet.bundles["1.0.0"]), manifest_files(fleet.bundles["1.1.0"])
    path = "models/tiny-ms/config.json"  # in both releases, and not needed by the venv
    digest = v1[path]
    assert v11[path] == digest
    blob = f"{AIRLOCK}/store/sha256/{digest}"
    sh(GPU2, f"printf 'X' | dd of={blob} bs=1 seek=0 conv=notrunc status=none")  # same size, other bytes
    found = sh(GPU2, f"sha256sum {blob}").split()[0]
    assert found != digest

    r = fleet.run(version="1.1.0")
    assert r.status == "failed", r.why()
    assert not r.failed(GPU1), r.why()
    assert r.host(GPU2)[UNPACK].failed, r.why()
    msg = r.host(GPU2)[UNPACK].msg
    print(f"{GPU2}: {msg}")
    assert path in msg and digest in msg and found in msg, msg
    assert current(GPU1) == "releases/1.1.0"
    assert current(GPU2) == "releases/1.0.0"
    assert releases(GPU2) == ["1.0.0"], "a half-built release was left behind"
    assert sh(GPU2, f"ls {AIRLOCK}/store/quarantine").startswith(digest)
    # the running release still works
    sh(GPU2, f"{AIRLOCK}/current/venv/bin/python -c 'import packaging'")
    sh(GPU2, f"test -f {AIRLOCK}/current/models/tiny-llama/config.json")

    again = fleet.run(version="1.1.0")
    assert again.status == "successful", again.why()
    assert sent(again, GPU2), "the quarantined blob was not transferred again"
    assert again.changed(GPU1) == [], f"{GPU1} was already converged: {again.changed(GPU1)}"
    assert current(GPU2) == "releases/1.1.0"
    assert sh(GPU2, f"sha256sum {AIRLOCK}/current/{path}").split()[0] == digest


def test_host_frozen_mid_run_is_reported_and_rerun_completes(fleet: Fleet) -> None:
    fleet.bring_to("1.1.0")
    paused: list[str] = []

    def freeze_gpu2(event: dict[str, Any]) -> None:
        # Frozen once the control node has verified the bundle, at the one bundle task that runs on the
        # control node alone: no command is in flight on gpu2 then, so its next one (the first of the
        # transfer stage) meets a frozen host instead of hanging half way.
        data = event.get("event_data") or {}
        if not paused and event.get("event") == "playbook_on_task_start" and data.get("task") == SCRATCH_CLEANUP:
            podman("pause", GPU2)
            paused.append(data["task"])

    try:
        # should gpu2 freeze with a command in flight after all, the task timeout ends that command
        r = fleet.run(version="1.2.0", on_event=freeze_gpu2, envvars={"ANSIBLE_TASK_TIMEOUT": "90"})
        assert paused, f"the task {SCRATCH_CLEANUP!r} never started:\n{r.why()}"
    finally:
        podman("unpause", GPU2, check=False)
    assert r.status == "failed", r.why()
    print(f"{GPU2}: {'unreachable' if r.unreachable(GPU2) else 'failed'}: {r.messages(GPU2)}")
    assert r.unreachable(GPU2) or "timed out" in r.messages(GPU2).lower(), r.why()
    assert not r.failed(GPU1), r.why()
    assert (GPU1, ACTIVATE) in r.changed(GPU1)
    assert current(GPU1) == "releases/1.2.0"
    assert current(GPU2) == "releases/1.1.0"
    assert all(not name.startswith(".") for name in releases(GPU2)), releases(GPU2)
    sh(GPU2, f"{AIRLOCK}/current/venv/bin/python -c 'import packaging'")

    again = fleet.run(version="1.2.0")
    assert again.status == "successful", again.why()
    assert again.changed(GPU1) == [], again.changed(GPU1)
    assert sent(again, GPU2)
    for h in HOSTS:
        assert current(h) == "releases/1.2.0"


def test_disk_full_during_the_transfer_leaves_the_running_release(fleet: Fleet) -> None:
    fleet.bring_to("1.2.0", hosts=(GPU1,))
    incoming = f"{AIRLOCK}/store/incoming"
    sh(GPU1, f"mount -t tmpfs -o size=16k,mode=0755 tmpfs {incoming}")
    try:
        r = fleet.run(version="1.3.0", limit=GPU1)
        assert r.status == "failed", r.why()
        failed = [t for t in (BATCH, TRANSFER) if t in r.host(GPU1) and r.host(GPU1)[t].failed]
        assert failed, r.why()
        msg = r.messages(GPU1)
        print(f"{GPU1}: {msg}")
        assert "No space left on device" in msg, msg
        assert incoming in msg, msg
        assert current(GPU1) == "releases/1.2.0"
        assert "1.3.0" not in releases(GPU1)
        assert all(not name.startswith(".") for name in releases(GPU1)), releases(GPU1)
        leftovers = [n for n in sh(GPU1, f"ls -A {incoming}").split() if len(n) != 64]
        assert leftovers == [], f"partial transfers left in {incoming}: {leftovers}"
        sh(GPU1, f"{AIRLOCK}/current/venv/bin/python -c 'import packaging'")
    finally:
        sh(GPU1, f"umount {incoming}", check=False)

    again = fleet.run(version="1.3.0", limit=GPU1)
    assert again.status == "successful", again.why()
    assert current(GPU1) == "releases/1.3.0"
    assert sh(GPU1, f"cat {AIRLOCK}/current/models/notes/changelog.txt").startswith("release 1.3.0")
