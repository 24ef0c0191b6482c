#!/usr/bin/python3
"""airlock-lb: drain and restore Airlock's workers behind the nginx load balancer.

The loadbalancer role writes a description of the services and backends (``/etc/airlock/lb/backends.json``);
this tool owns the drained-state file (``/var/lib/airlock/lb/drained``, one inventory host name a line) and
renders nginx's upstream configuration from the two: one ``upstream`` block per service, a drained backend
marked ``down``, plus the ``map`` that turns ``$upstream_addr`` into the worker's inventory name
(``$airlock_backend``, sent as ``X-Airlock-Backend``). A candidate is checked with ``nginx -t`` before it
replaces the live file, the whole live configuration is checked again after, and nginx is reloaded
gracefully: requests in flight finish on the old worker processes, new ones follow the new configuration.

    airlock-lb status                                  JSON: backends, drained, live file in sync, old workers
    airlock-lb drain HOST [--wait S] [--force]         no new requests to HOST; --wait: until in-flight ones end
    airlock-lb restore HOST                            HOST takes requests again
    airlock-lb apply [--no-reload]                     render, check, replace, reload (what the role runs)
    airlock-lb render                                  print the upstream configuration
    airlock-lb check-config FILE                       validate a candidate backends.json (the role's validate)
    airlock-lb check-site FILE                         nginx -t a candidate site with the upstreams (ditto)

drain, restore and apply take --dry-run (report, change nothing). Exit codes: 0 done, 1 error, 2 usage,
3 refused (it would drain the last backend; --force overrides), 4 --wait ran out with requests in flight.
Python 3.11 standard library only: it runs on the balancer's system Python.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import ipaddress
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

DEFAULT_CONFIG = "/etc/airlock/lb/backends.json"
FORMAT_VERSION = 1
SERVICE_NAME = re.compile(r"^[a-z0-9][a-z0-9_]*$")
HOST_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")  # inventory names and DNS names alike
DURATION = re.compile(r"^[0-9]+(ms|s|m|h)?$")
BALANCE = ("least_conn", "round_robin")
SHUTTING_DOWN = "worker process is shutting down"
REFUSED, TIMED_OUT = 3, 4


class LbError(Exception):
    """An error for the operator: what is wrong (naming the file or host) and how to fix it."""

    def __init__(self, message: str, hint: str = "", code: int = 1) -> None:
        super().__init__(message)
        self.message, self.hint, self.code = message, hint, code


@dataclass(frozen=True)
class Service:
    name: str
    port: int


@dataclass(frozen=True)
class Backend:
    name: str
    address: str


@dataclass(frozen=True)
class Config:
    path: Path
    services: tuple[Service, ...]
    backends: tuple[Backend, ...]
    upstreams_file: Path
    site_file: Path | None
    drained_file: Path
    nginx_binary: str
    nginx_conf: Path
    nginx_prefix: str | None
    nginx_pid_file: Path
    max_fails: int
    fail_timeout: str
    keepalive: int
    keepalive_timeout: str
    balance: str

    @property
    def names(self) -> list[str]:
        return [b.name for b in self.backends]


# -- reading the description --------------------------------------------------------------------------------
FIX_CONFIG = ("the loadbalancer role writes this file from the inventory: fix the role's variables or the "
              "inventory and run playbooks/loadbalancer.yml again, rather than editing it by hand")


class _Reader:
    """Typed access to the parsed JSON; every error names the file and the field."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, what: str) -> NoReturn:
        raise LbError(f"{self.path}: {where}: {what}", FIX_CONFIG)

    def obj(self, value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(where, f"expected an object, got {type(value).__name__}")
        return value

    def str_(self, d: dict[str, Any], key: str, where: str, pattern: re.Pattern[str] | None = None) -> str:
        v = d.get(key)
        if not isinstance(v, str) or not v:
            self.fail(f"{where}.{key}" if where else key, f"expected a non-empty string, got {v!r}")
        if pattern is not None and not pattern.match(v):
            self.fail(f"{where}.{key}" if where else key, f"{v!r} does not match {pattern.pattern}")
        return v

    def path_(self, d: dict[str, Any], key: str, where: str = "") -> Path:
        v = self.str_(d, key, where)
        if not v.startswith("/"):
            self.fail(f"{where}.{key}" if where else key, f"expected an absolute path, got {v!r}")
        return Path(v)

    def int_(self, d: dict[str, Any], key: str, where: str, lo: int, hi: int) -> int:
        v = d.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            self.fail(f"{where}.{key}" if where else key, f"expected an integer from {lo} to {hi}, got {v!r}")
        return v

    def list_(self, d: dict[str, Any], key: str) -> list[Any]:
        v = d.get(key)
        if not isinstance(v, list) or not v:
            self.fail(key, f"expected a non-empty list, got {v!r}")
        return v


def parse_config(text: str, path: Path) -> Config:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise LbError(f"{path}:{e.lineno}:{e.colno}: not valid JSON: {e.msg}", FIX_CONFIG) from None
    r = _Reader(path)
    d = r.obj(data, "top level")
    if d.get("version") != FORMAT_VERSION:
        r.fail("version", f"expected {FORMAT_VERSION}, got {d.get('version')!r} (a newer role or tool?)")
    services: list[Service] = []
    for i, item in enumerate(r.list_(d, "services")):
        where = f"services[{i}]"
        s = r.obj(item, where)
        services.append(Service(r.str_(s, "name", where, SERVICE_NAME), r.int_(s, "port", where, 1, 65535)))
    backends: list[Backend] = []
    for i, item in enumerate(r.list_(d, "backends")):
        where = f"backends[{i}]"
        b = r.obj(item, where)
        name = r.str_(b, "name", where, HOST_NAME)
        address = r.str_(b, "address", where)
        if not _is_ip(address) and not HOST_NAME.match(address):
            r.fail(f"{where}.address", f"{address!r} is neither an IP address nor a host name")
        backends.append(Backend(name, address))
    for label, values in (("services", [s.name for s in services]), ("backends", [b.name for b in backends]),
                          ("backend addresses", [b.address for b in backends])):
        dupes = sorted({v for v in values if values.count(v) > 1})
        if dupes:
            r.fail(label, f"listed twice: {', '.join(dupes)}")
    n = r.obj(d.get("nginx"), "nginx")
    prefix = n.get("prefix")
    if prefix is not None and not isinstance(prefix, str):
        r.fail("nginx.prefix", f"expected a string or null, got {prefix!r}")
    site = d.get("site_file")
    return Config(
        path=path, services=tuple(services), backends=tuple(backends),
        upstreams_file=r.path_(d, "upstreams_file"),
        site_file=r.path_(d, "site_file") if site is not None else None,
        drained_file=r.path_(d, "drained_file"),
        nginx_binary=r.str_(n, "binary", "nginx"), nginx_conf=r.path_(n, "conf", "nginx"),
        nginx_prefix=prefix, nginx_pid_file=r.path_(n, "pid_file", "nginx"),
        max_fails=r.int_(d, "max_fails", "", 0, 1000),
        fail_timeout=r.str_(d, "fail_timeout", "", DURATION),
        keepalive=r.int_(d, "keepalive", "", 0, 100000),
        keepalive_timeout=r.str_(d, "keepalive_timeout", "", DURATION),
        balance=_choice(r, d, "balance", BALANCE),
    )


def _choice(r: _Reader, d: dict[str, Any], key: str, choices: tuple[str, ...]) -> str:
    v = d.get(key)
    if v not in choices:
        r.fail(key, f"expected one of {', '.join(choices)}, got {v!r}")
    return str(v)


def load_config(path: Path) -> Config:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise LbError(f"{path}: no such file",
                      "the loadbalancer role writes it (run playbooks/loadbalancer.yml); or pass --config") from None
    except OSError as e:
        raise LbError(f"{path}: cannot read it: {e.strerror}", "run airlock-lb as root") from None
    return parse_config(text, path)


def read_drained(cfg: Config) -> list[str]:
    """The drained host names, in file order; blank lines and # comments ignored."""
    try:
        lines = cfg.drained_file.read_text().splitlines()
    except FileNotFoundError:
        return []
    except OSError as e:
        raise LbError(f"{cfg.drained_file}: cannot read it: {e.strerror}", "run airlock-lb as root") from None
    names = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    return list(dict.fromkeys(names))


def write_drained(cfg: Config, names: list[str]) -> None:
    head = ("# Drained backends, one inventory host name a line. Owned by airlock-lb (drain/restore): the\n"
            f"# loadbalancer role never rewrites it. Configuration: {cfg.path}\n")
    write_atomic(cfg.drained_file, head + "".join(f"{n}\n" for n in sorted(names)))


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        tmp.chmod(0o644)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def locked(cfg: Config) -> Iterator[None]:
    """One change at a time (two operators draining two workers at once must not lose one drain)."""
    cfg.drained_file.parent.mkdir(parents=True, exist_ok=True)
    with (cfg.drained_file.parent / f".{cfg.drained_file.name}.lock").open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


# -- rendering ----------------------------------------------------------------------------------------------
def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _host_port(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _resolve(b: Backend) -> list[str]:
    """The IP addresses nginx will connect to: $upstream_addr shows these, never the name."""
    if _is_ip(b.address):
        return [b.address]
    try:
        infos = socket.getaddrinfo(b.address, None, type=socket.SOCK_STREAM)
    except OSError as e:
        raise LbError(f"backend {b.name}: its address {b.address!r} does not resolve on this balancer: {e}",
                      "set the worker's ansible_host (or loadbalancer_backend_address) to an IP address, or "
                      "add the name to /etc/hosts; then run playbooks/loadbalancer.yml again") from None
    return list(dict.fromkeys(str(i[4][0]) for i in infos))


def render(cfg: Config, drained: list[str]) -> str:
    """The upstream configuration: deterministic text, so an unchanged state rewrites nothing."""
    down = set(drained)
    lines = [
        f"# Written by airlock-lb from {cfg.path} and {cfg.drained_file}; do not edit: `airlock-lb apply`",
        "# (and every run of the loadbalancer role) rewrites it. Drain and restore with airlock-lb.",
        f"# Drained: {', '.join(n for n in cfg.names if n in down) or 'none'}.",
        "",
        "# The worker that answered, by inventory name. $upstream_addr lists every address tried",
        '# ("a:8000, b:8000"); the last one answered.',
        "map $upstream_addr $airlock_backend {",
        "    default $upstream_addr;",
    ]
    for b in cfg.backends:
        for ip in _resolve(b):
            addr = re.escape(f"[{ip}]" if ":" in ip else ip)
            lines.append(f'    "~(?:^|\\s){addr}:[0-9]+$" "{b.name}";')
    lines.append("}")
    for s in cfg.services:
        lines += ["", f"upstream airlock_{s.name} {{",
                  f"    zone airlock_{s.name} 64k;  # failure state shared by all worker processes"]
        if cfg.balance == "least_conn":
            lines.append("    least_conn;")
        for b in cfg.backends:
            state = " down;  # drained" if b.name in down else ";"
            lines.append(f"    server {_host_port(b.address, s.port)} max_fails={cfg.max_fails} "
                         f"fail_timeout={cfg.fail_timeout}{state}")
        if cfg.keepalive > 0:
            lines += [f"    keepalive {cfg.keepalive};", f"    keepalive_timeout {cfg.keepalive_timeout};"]
        lines.append("}")
    return "\n".join(lines) + "\n"


# -- nginx --------------------------------------------------------------------------------------------------
def _nginx(cfg: Config, *args: str, conf: Path | None = None, prefix: str | None = None) -> list[str]:
    cmd = [cfg.nginx_binary]
    prefix = prefix if prefix is not None else cfg.nginx_prefix
    if prefix:
        cmd += ["-p", prefix]
    return [*cmd, "-c", str(conf or cfg.nginx_conf), *args]


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    except FileNotFoundError:
        raise LbError(f"{cmd[0]}: no such program",
                      "install nginx (the loadbalancer role does, from the bundle), or fix nginx.binary in "
                      "the configuration") from None


def _quote(path: Path | str) -> str:
    return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'


def nginx_test(cfg: Config, includes: list[Path], what: str) -> None:
    """nginx -t on a throw-away main configuration that includes the given files inside http {}.

    The wrapper keeps every path nginx writes during a test (pid, temporary folders) in a scratch folder,
    so a candidate is checked without touching the live configuration or the running server."""
    with tempfile.TemporaryDirectory(prefix="airlock-lb-check.") as tmp:
        t = Path(tmp)
        temps = "".join(f"    {kind}_temp_path {_quote(t / kind)};\n"
                        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        body = "".join(f"    include {_quote(p)};\n" for p in includes)
        wrapper = t / "nginx.conf"
        wrapper.write_text(f"pid {_quote(t / 'nginx.pid')};\nerror_log stderr;\nevents {{}}\n"
                           f"http {{\n{temps}{body}}}\n")
        r = _run(_nginx(cfg, "-t", "-q", conf=wrapper, prefix=tmp + "/"))
        if r.returncode != 0:
            raise LbError(f"nginx rejects {what}:\n{(r.stderr or r.stdout).strip()}",
                          "nothing was changed; fix the loadbalancer role's variables (or the file named) and retry")


def nginx_test_live(cfg: Config) -> subprocess.CompletedProcess[str]:
    return _run(_nginx(cfg, "-t", "-q"))


def master_pid(cfg: Config) -> int | None:
    try:
        pid = int(cfg.nginx_pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if Path(f"/proc/{pid}").exists() else None


def workers(master: int) -> dict[int, str]:
    """The master's child processes and their titles ("nginx: worker process [is shutting down]")."""
    out: dict[int, str] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == master:
                out[int(proc.name)] = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
    return out


def old_workers(master: int | None) -> list[int]:
    if master is None:
        return []
    return sorted(p for p, title in workers(master).items() if SHUTTING_DOWN in title)


def reload_nginx(cfg: Config) -> tuple[bool, list[int]]:
    """Graceful reload; returns (reloaded, the worker processes that were serving before it)."""
    master = master_pid(cfg)
    if master is None:
        say(f"nginx is not running (no live process in {cfg.nginx_pid_file}): the configuration takes effect "
            "when it starts")
        return False, []
    before = sorted(workers(master))
    r = _run(_nginx(cfg, "-s", "reload"))
    if r.returncode != 0:
        raise LbError(f"nginx -s reload failed: {(r.stderr or r.stdout).strip()}",
                      "the new configuration is in place and valid; reload nginx by hand: systemctl reload nginx")
    return True, before


def wait_for(cfg: Config, pids: list[int], seconds: float) -> float:
    """Wait until the given worker processes (and any still shutting down) have exited."""
    start = time.monotonic()
    master = master_pid(cfg)
    pending = set(pids) | set(old_workers(master))
    while True:
        alive = {p for p in pending if Path(f"/proc/{p}").exists()}
        if master is not None:
            alive &= set(workers(master))
        if not alive:
            return time.monotonic() - start
        if time.monotonic() - start >= seconds:
            listed = ", ".join(map(str, sorted(alive)))
            raise LbError(
                f"after {seconds:g} s, {len(alive)} old nginx worker process(es) (pid {listed}) still finish "
                "requests that started before the change",
                "the change is in place: no new request goes to a drained backend. Wait longer (airlock-lb status "
                "shows old_workers) before stopping the worker, or stop it anyway and let those requests fail",
                TIMED_OUT)
        time.sleep(0.1)


# -- operations ---------------------------------------------------------------------------------------------
def say(message: str) -> None:
    print(f"airlock-lb: {message}", file=sys.stderr)


def stale(cfg: Config, drained: list[str]) -> list[str]:
    return [n for n in drained if n not in cfg.names]


def apply(cfg: Config, drained: list[str], *, dry_run: bool = False, reload: bool = True) -> dict[str, Any]:
    """Bring the live upstream file in line with the description and the drained state."""
    for name in stale(cfg, drained):
        say(f"{cfg.drained_file} names {name!r}, which {cfg.path} does not list: ignored "
            f"(`airlock-lb restore {name}` removes it)")
    text = render(cfg, drained)
    try:
        old: str | None = cfg.upstreams_file.read_text()
    except FileNotFoundError:
        old = None
    result: dict[str, Any] = {"changed": old != text, "file": str(cfg.upstreams_file),
                              "drained": [n for n in cfg.names if n in drained], "reloaded": False,
                              "old_workers_before": []}
    if old == text or dry_run:
        return result
    with tempfile.TemporaryDirectory(prefix="airlock-lb.") as tmp:
        candidate = Path(tmp) / cfg.upstreams_file.name
        candidate.write_text(text)
        site = [cfg.site_file] if cfg.site_file is not None and cfg.site_file.exists() else []
        nginx_test(cfg, [candidate, *site], f"the new upstream configuration for {cfg.upstreams_file}")
    write_atomic(cfg.upstreams_file, text)
    live = nginx_test_live(cfg)
    if live.returncode != 0:
        if old is None:
            cfg.upstreams_file.unlink()
        else:
            write_atomic(cfg.upstreams_file, old)
        raise LbError(f"nginx rejects the live configuration {cfg.nginx_conf} with the new {cfg.upstreams_file}; "
                      f"the previous file is back:\n{(live.stderr or live.stdout).strip()}",
                      f"fix what `nginx -t -c {cfg.nginx_conf}` reports, then run `airlock-lb apply`")
    if reload:
        result["reloaded"], result["old_workers_before"] = reload_nginx(cfg)
    return result


def change_drained(cfg: Config, host: str, *, drain: bool, force: bool, dry_run: bool) -> dict[str, Any]:
    drained = read_drained(cfg)
    if host not in cfg.names and not (not drain and host in drained):
        raise LbError(f"unknown backend {host!r}: {cfg.path} lists {', '.join(cfg.names)}",
                      "give the worker's inventory host name; a new worker needs a run of playbooks/loadbalancer.yml "
                      "first, so that the balancer knows it")
    new = [n for n in drained if n != host] + ([host] if drain else [])
    moved = set(new) != set(drained)
    if drain and host not in drained:
        active = [n for n in cfg.names if n not in new]
        if not active and not force:
            raise LbError(f"draining {host} would leave no backend to serve requests "
                          f"(drained already: {', '.join(drained) or 'none'})",
                          "restore another backend first; or pass --force to stop serving on purpose "
                          "(clients then get 502 Bad Gateway)", REFUSED)
    if dry_run:
        result = apply(cfg, new, dry_run=True)
    elif moved:
        try:
            before: str | None = cfg.drained_file.read_text()
        except FileNotFoundError:
            before = None
        write_drained(cfg, new)
        try:
            result = apply(cfg, new)
        except BaseException:  # the state file says what nginx serves: put it back as it was
            if before is None:
                cfg.drained_file.unlink(missing_ok=True)
            else:
                write_atomic(cfg.drained_file, before)
            raise
    else:
        result = apply(cfg, new)  # the state file already says so; make sure the live file does too
    result["changed"] = result["changed"] or moved
    result["host"] = host
    return result


def status(cfg: Config) -> dict[str, Any]:
    drained = read_drained(cfg)
    try:
        live: str | None = cfg.upstreams_file.read_text()
    except FileNotFoundError:
        live = None
    master = master_pid(cfg)
    return {
        "config": str(cfg.path),
        "upstreams_file": str(cfg.upstreams_file),
        "drained_file": str(cfg.drained_file),
        "in_sync": live == render(cfg, drained),
        "nginx_running": master is not None,
        "old_workers": len(old_workers(master)),
        "services": [{"name": s.name, "port": s.port, "upstream": f"airlock_{s.name}"} for s in cfg.services],
        "backends": [{"name": b.name, "address": b.address, "state": "drained" if b.name in drained else "active"}
                     for b in cfg.backends],
        "stale_drained": stale(cfg, drained),
    }


# -- command line -------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="airlock-lb", description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--config", type=Path, default=Path(os.environ.get("AIRLOCK_LB_CONFIG", DEFAULT_CONFIG)),
                    help=f"the description the loadbalancer role writes (default {DEFAULT_CONFIG})")
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("status", help="print the state as JSON")
    d = sub.add_parser("drain", help="send no new requests to HOST")
    d.add_argument("host")
    d.add_argument("--wait", type=float, default=0, metavar="SECONDS",
                   help="then wait up to SECONDS for the requests in flight before the change to finish")
    d.add_argument("--force", action="store_true", help="drain even the last active backend")
    d.add_argument("--dry-run", action="store_true")
    r = sub.add_parser("restore", help="let HOST take requests again")
    r.add_argument("host")
    r.add_argument("--dry-run", action="store_true")
    a = sub.add_parser("apply", help="render, check, replace and reload")
    a.add_argument("--dry-run", action="store_true")
    a.add_argument("--no-reload", action="store_true", help="leave the reload to the caller")
    sub.add_parser("render", help="print the upstream configuration")
    cc = sub.add_parser("check-config", help="validate a candidate description FILE")
    cc.add_argument("file", type=Path)
    cs = sub.add_parser("check-site", help="nginx -t a candidate site FILE together with the upstreams")
    cs.add_argument("file", type=Path)
    return ap


def run(args: argparse.Namespace) -> int:
    cmd: str = args.command
    if cmd == "check-config":
        cfg = load_config(args.file)
        with tempfile.TemporaryDirectory(prefix="airlock-lb.") as tmp:
            up = Path(tmp) / "upstreams.conf"
            up.write_text(render(cfg, read_drained(cfg)))
            nginx_test(cfg, [up], f"the upstreams rendered from {args.file}")
        return 0
    cfg = load_config(args.config)
    if cmd == "check-site":
        with tempfile.TemporaryDirectory(prefix="airlock-lb.") as tmp:
            up = Path(tmp) / "upstreams.conf"
            up.write_text(render(cfg, read_drained(cfg)))
            nginx_test(cfg, [up, args.file], f"the site {args.file} (with the upstreams from {cfg.path})")
        return 0
    if cmd == "render":
        sys.stdout.write(render(cfg, read_drained(cfg)))
        return 0
    if cmd == "status":
        result = status(cfg)
    elif cmd == "apply":
        with locked(cfg):
            result = apply(cfg, read_drained(cfg), dry_run=args.dry_run, reload=not args.no_reload)
    else:
        drain = cmd == "drain"
        with locked(cfg):
            result = change_drained(cfg, args.host, drain=drain, force=drain and args.force, dry_run=args.dry_run)
        verb = ("would be " if args.dry_run else "") + ("drained" if drain else "restored")
        say(f"{args.host} {verb}" if result["changed"] else f"{args.host} was {verb} already: nothing to do")
        if drain and args.wait > 0 and not args.dry_run:
            result["waited_s"] = round(wait_for(cfg, result["old_workers_before"], args.wait), 1)
            say(f"requests in flight before the drain have finished ({result['waited_s']} s)")
    print(json.dumps(result, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except LbError as e:
        print(f"airlock-lb: error: {e.message}", file=sys.stderr)
        if e.hint:
            print(f"airlock-lb: hint: {e.hint}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
