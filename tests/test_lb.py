"""The load balancer: airlock-lb (roles/loadbalancer/files/airlock_lb.py) and the role's site template.

The tool runs for real, as a subprocess on files in a temporary folder. The end-to-end tests run Debian's
own nginx (the .deb the bundle carries, fetched with `apt-get download` into a cache and unpacked with
`dpkg-deb -x`; no installation) as the current user on 127.0.0.1 with the site rendered from the role's
template, in front of two real HTTP backends on 127.0.0.2 and 127.0.0.3 (each runs both services). They
show requests spread over both backends with the right X-Airlock-Backend header, a stopped backend that
fails no POST, a drain that waits for the requests in flight and then sends nothing new to the drained
backend, and a restore that brings it back.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jinja2
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
ROLE = ROOT / "roles" / "loadbalancer"
TOOL = ROLE / "files" / "airlock_lb.py"
A, B = "gpu-a.test", "gpu-b.test"  # inventory names of the two backends
ADDR = {A: "127.0.0.2", B: "127.0.0.3"}
DEB_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "airlock-tests" / "nginx-debs"


def lb(config: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(TOOL), "--config", str(config), *args], capture_output=True,
                          text=True, timeout=timeout)


def description(tmp: Path, *, ports: tuple[int, int] = (8000, 8100), nginx: Path | None = None,
                **over: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "version": 1,
        "services": [{"name": "vllm", "port": ports[0]}, {"name": "asr", "port": ports[1]}],
        "backends": [{"name": A, "address": ADDR[A]}, {"name": B, "address": ADDR[B]}],
        "upstreams_file": str(tmp / "conf" / "conf.d" / "airlock-upstreams.conf"),
        "site_file": str(tmp / "conf" / "sites" / "airlock"),
        "drained_file": str(tmp / "state" / "drained"),
        "nginx": {"binary": str(nginx or "/nonexistent/nginx"), "conf": str(tmp / "conf" / "nginx.conf"),
                  "prefix": f"{tmp}/", "pid_file": str(tmp / "nginx.pid")},
        "max_fails": 1, "fail_timeout": "10s", "keepalive": 8, "keepalive_timeout": "4s", "balance": "least_conn",
    }
    d.update(over)
    return d


def write_json(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))
    return path


# -- without nginx: rendering, state and errors -------------------------------------------------------------
def test_render_marks_a_drained_backend_down_and_maps_addresses_to_names(tmp_path: Path) -> None:
    cfg = write_json(tmp_path / "backends.json", description(tmp_path, backends=[
        {"name": A, "address": "10.20.0.11"}, {"name": B, "address": "fd00::12"}]))
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "drained").write_text(f"# comment\n{B}\ngone.test\n")
    r = lb(cfg, "render")
    assert r.returncode == 0, r.stderr
    text = r.stdout
    assert "upstream airlock_vllm {" in text and "upstream airlock_asr {" in text
    assert "    server 10.20.0.11:8000 max_fails=1 fail_timeout=10s;\n" in text
    assert "    server [fd00::12]:8100 max_fails=1 fail_timeout=10s down;  # drained\n" in text
    assert "least_conn;" in text and "keepalive 8;" in text and "keepalive_timeout 4s;" in text
    # $upstream_addr is "a:8000, b:8000" after a retry: the map keys on the last address
    assert '"~(?:^|\\s)10\\.20\\.0\\.11:[0-9]+$" "gpu-a.test";' in text
    assert '"~(?:^|\\s)\\[fd00::12\\]:[0-9]+$" "gpu-b.test";' in text
    assert "Drained: gpu-b.test." in text

    r = lb(cfg, "status")
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)
    assert [(b["name"], b["state"]) for b in st["backends"]] == [(A, "active"), (B, "drained")]
    assert st["stale_drained"] == ["gone.test"] and st["in_sync"] is False and st["nginx_running"] is False


def test_errors_name_the_file_or_host_and_the_fix(tmp_path: Path) -> None:
    cfg = tmp_path / "backends.json"
    r = lb(cfg, "status")
    assert r.returncode == 1 and f"{cfg}: no such file" in r.stderr and "playbooks/loadbalancer.yml" in r.stderr

    cfg.write_text('{"version": 1,\n "services": [}\n')
    r = lb(cfg, "status")
    assert r.returncode == 1 and f"{cfg}:2:" in r.stderr and "not valid JSON" in r.stderr
    assert "rather than editing it by hand" in r.stderr

    write_json(cfg, description(tmp_path, services=[{"name": "vllm", "port": "8000"}]))
    r = lb(cfg, "status")
    assert r.returncode == 1 and f"{cfg}: services[0].port: expected an integer" in r.stderr

    write_json(cfg, description(tmp_path, backends=[{"name": A, "address": "x y"}]))
    assert "backends[0].address: 'x y' is neither an IP address nor a host name" in lb(cfg, "status").stderr

    write_json(cfg, description(tmp_path))
    r = lb(cfg, "drain", "gpu-c.test")
    assert r.returncode == 1
    assert f"unknown backend 'gpu-c.test': {cfg} lists gpu-a.test, gpu-b.test" in r.stderr and "inventory" in r.stderr

    # the last active backend is only drained with --force (dry runs: nothing is written, no nginx needed)
    (tmp_path / "state").mkdir(exist_ok=True)
    (tmp_path / "state" / "drained").write_text(f"{B}\n")
    r = lb(cfg, "drain", A, "--dry-run")
    assert r.returncode == 3, r.stderr
    assert f"draining {A} would leave no backend" in r.stderr and "--force" in r.stderr
    r = lb(cfg, "drain", A, "--dry-run", "--force")
    assert r.returncode == 0 and json.loads(r.stdout)["changed"] is True, r.stderr
    r = lb(cfg, "restore", B, "--dry-run")
    assert r.returncode == 0 and json.loads(r.stdout)["changed"] is True, r.stderr
    assert (tmp_path / "state" / "drained").read_text() == f"{B}\n"  # dry runs changed nothing
    assert not Path(description(tmp_path)["upstreams_file"]).exists()

    # a real change needs nginx to check it: a missing binary is named, and the state is left as it was
    r = lb(cfg, "restore", B)
    assert r.returncode == 1 and "/nonexistent/nginx: no such program" in r.stderr
    assert (tmp_path / "state" / "drained").read_text() == f"{B}\n"


# -- with Debian's nginx ------------------------------------------------------------------------------------
def nginx_binary(tmp: Path) -> Path:
    """Debian's nginx, unpacked from its .deb (cached), not installed."""
    DEB_CACHE.mkdir(parents=True, exist_ok=True)
    debs = sorted(DEB_CACHE.glob("nginx*_*.deb"))
    if len(debs) < 2:
        sandbox = ["-o", "APT::Sandbox::User=root"] if os.geteuid() == 0 else []
        r = subprocess.run(["apt-get", "download", "-q", *sandbox, "nginx", "nginx-common"], cwd=DEB_CACHE,
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            pytest.skip(f"apt-get download nginx nginx-common failed (apt lists missing?): {r.stderr.strip()}")
        debs = sorted(DEB_CACHE.glob("nginx*_*.deb"))
    root = tmp / "nginx-root"
    for deb in debs:
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    binary = root / "usr" / "sbin" / "nginx"
    r = subprocess.run([str(binary), "-v"], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"Debian's nginx does not run here: {r.stderr.strip()}")
    return binary


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, name: str, service: str, address: str, port: int, hits: list[tuple[str, str]]) -> None:
        self.name, self.service, self.hits = name, service, hits
        self.inflight = 0
        self.lock = threading.Lock()
        self.conns: set[socket.socket] = set()
        super().__init__((address, port), Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, addr = super().get_request()
        with self.lock:
            self.conns.add(conn)
        return conn, addr

    def shutdown_request(self, request: Any) -> None:
        with self.lock:
            self.conns.discard(request)
        super().shutdown_request(request)

    def kill(self) -> None:
        """Like a worker process that stops: the port refuses, and open connections (nginx keeps some
        alive) are cut."""
        self.shutdown()
        self.server_close()
        with self.lock:
            conns = list(self.conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def do_GET(self) -> None:
        self.answer(b"")

    def do_POST(self) -> None:
        self.answer(self.rfile.read(int(self.headers.get("Content-Length", "0"))))

    def answer(self, body: bytes) -> None:
        s = self.server
        with s.lock:
            s.inflight += 1
            s.hits.append((s.name, s.service))
        time.sleep(float(parse_qs(urlsplit(self.path).query).get("sleep", ["0"])[0]))
        data = json.dumps({"backend": s.name, "service": s.service, "path": self.path, "method": self.command,
                           "body": len(body)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        with s.lock:
            s.inflight -= 1

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class Fleet:
    """Two backends (vllm and asr on each), nginx in front, airlock-lb's description."""

    tmp: Path
    config: Path
    ports: tuple[int, int]
    listen: int
    nginx: Path
    hits: list[tuple[str, str]] = field(default_factory=list)
    servers: dict[tuple[str, str], Server] = field(default_factory=dict)

    def start(self, name: str, service: str) -> None:
        port = self.ports[0] if service == "vllm" else self.ports[1]
        srv = Server(name, service, ADDR[name], port, self.hits)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        self.servers[name, service] = srv

    def stop(self, name: str, service: str) -> None:
        self.servers.pop((name, service)).kill()

    def request(self, path: str, data: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
        req = urllib.request.Request(f"http://127.0.0.1:{self.listen}{path}", data=data)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def answered(self, path: str, n: int, data: bytes | None = None) -> list[str]:
        """Send n requests; every one must succeed and its header must name the backend that answered."""
        names = []
        for _ in range(n):
            status, headers, body = self.request(path, data)
            assert status == 200, (status, body)
            names.append(json.loads(body)["backend"])
            assert headers["X-Airlock-Backend"] == names[-1]
        return names

    def access_log(self) -> list[str]:
        return (self.tmp / "logs" / "access.log").read_text().splitlines()


def free_ports(n: int) -> list[int]:
    """Ports free on 127.0.0.1, 127.0.0.2 and 127.0.0.3 alike."""
    out: list[int] = []
    while len(out) < n:
        with socket.socket() as s:
            s.bind(("127.0.0.2", 0))
            port = s.getsockname()[1]
            ok = True
            for addr in ("127.0.0.1", "127.0.0.3"):
                with socket.socket() as t:
                    try:
                        t.bind((addr, port))
                    except OSError:
                        ok = False
            if ok and port not in out:
                out.append(port)
    return out


def render_site(tmp: Path, listen: int, ports: tuple[int, int]) -> str:
    """The role's site template, with the role's defaults (its locations) and the test's paths and ports."""
    v = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    for s in v["loadbalancer_services"]:
        s["port"] = ports[0] if s["name"] == "vllm" else ports[1]
    v.update(ansible_managed="Ansible managed (tests/test_lb.py)", loadbalancer_listen_address="127.0.0.1",
             loadbalancer_listen_port=listen, loadbalancer_access_log=str(tmp / "logs" / "access.log"),
             loadbalancer_web_root=str(tmp / "web"), loadbalancer_upstreams_file=str(tmp / "upstreams"))
    env = jinja2.Environment(trim_blocks=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined,
                             autoescape=False)  # the settings of Ansible's template module
    return env.from_string((ROLE / "templates" / "airlock-site.conf.j2").read_text()).render(v)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("lb")
    binary = nginx_binary(tmp)
    p1, p2, listen = free_ports(3)
    for sub in ("conf/conf.d", "conf/sites", "logs", "web", "state", "temp"):
        (tmp / sub).mkdir(parents=True, exist_ok=True)
    (tmp / "web" / "index.html").write_text("<!doctype html><title>Airlock</title>\n")
    kinds = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    temps = "".join(f"    {k}_temp_path {tmp}/temp/{k};\n" for k in kinds)
    (tmp / "conf" / "nginx.conf").write_text(
        ("user root;\n" if os.geteuid() == 0 else "")  # the workers read the test's private folders
        + f"worker_processes 2;\npid {tmp}/nginx.pid;\nerror_log {tmp}/logs/error.log info;\n"
        + "events { worker_connections 256; }\n"
        + f"http {{\n{temps}    include {binary.parents[2]}/etc/nginx/mime.types;\n"
        + f"    include {tmp}/conf/conf.d/*.conf;\n    include {tmp}/conf/sites/*;\n}}\n")
    cfg = write_json(tmp / "backends.json",
                     description(tmp, ports=(p1, p2), nginx=binary, fail_timeout="1s"))
    f = Fleet(tmp=tmp, config=cfg, ports=(p1, p2), listen=listen, nginx=binary)
    for name in (A, B):
        for service in ("vllm", "asr"):
            f.start(name, service)
    r = lb(cfg, "apply", "--no-reload")  # no nginx yet: render and check the upstreams, like the role
    assert r.returncode == 0 and json.loads(r.stdout)["changed"] is True, r.stderr
    site = tmp / "candidate-site"
    site.write_text(render_site(tmp, listen, (p1, p2)))
    r = lb(cfg, "check-site", str(site))  # the role's validate
    assert r.returncode == 0, r.stderr
    shutil.copyfile(site, tmp / "conf" / "sites" / "airlock")
    r = subprocess.run([str(binary), "-p", f"{tmp}/", "-c", str(tmp / "conf" / "nginx.conf")], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    try:
        yield f
    finally:
        subprocess.run([str(binary), "-p", f"{tmp}/", "-c", str(tmp / "conf" / "nginx.conf"), "-s", "stop"],
                       capture_output=True, timeout=30)
        for key in list(f.servers):
            f.stop(*key)


@pytest.mark.network
def test_requests_spread_over_both_backends_and_name_the_one_that_answered(fleet: Fleet) -> None:
    names = fleet.answered("/v1/models", 8)
    assert set(names) == {A, B}
    # each path goes to its service; the longest prefix wins (/v1/audio/ is asr although /v1/ is vllm)
    for path, service, seen in [("/v1/chat/completions", "vllm", "/v1/chat/completions"),
                                ("/v1/audio/transcriptions", "asr", "/v1/audio/transcriptions"),
                                ("/recognize/", "asr", "/recognize/"), ("/asr/health", "asr", "/health")]:
        status, headers, body = fleet.request(path, b"x" * 1000 if "audio" in path else None)
        got = json.loads(body)
        assert status == 200 and (got["service"], got["path"]) == (service, seen), (path, got)
        assert headers["X-Airlock-Backend"] == got["backend"]
        assert headers["Access-Control-Expose-Headers"] == "X-Airlock-Backend"
    status, headers, body = fleet.request("/")
    assert status == 200 and b"<title>Airlock</title>" in body and "X-Airlock-Backend" not in headers
    assert fleet.request("/nothing-here")[0] == 404
    line = next(ln for ln in reversed(fleet.access_log()) if "/asr/health" in ln)
    assert "upstream_status=200" in line and "request_time=" in line and f":{fleet.ports[1]}" in line
    assert "backend=gpu-" in line


@pytest.mark.network
def test_a_stopped_backend_fails_no_post(fleet: Fleet) -> None:
    fleet.stop(B, "vllm")
    try:
        body = json.dumps({"model": "chat", "prompt": "hello"}).encode()
        names = fleet.answered("/v1/completions", 10, body)
        assert set(names) == {A}
        # the first POST after the stop tried the stopped worker, then answered from the other one
        tried = [ln for ln in fleet.access_log() if "POST /v1/completions" in ln]
        retried = [ln for ln in tried if f"{ADDR[B]}:{fleet.ports[0]}, {ADDR[A]}:{fleet.ports[0]}" in ln]
        assert retried and f"backend={A}" in retried[0] and "upstream_status=502, 200" in retried[0]
    finally:
        fleet.start(B, "vllm")
    time.sleep(2.1)  # fail_timeout (1 s here; nginx counts whole seconds): then the restarted worker is used
    assert set(fleet.answered("/v1/models", 8)) == {A, B}


@pytest.mark.network
def test_drain_waits_for_requests_in_flight_sends_nothing_new_and_restore_brings_it_back(fleet: Fleet) -> None:
    vllm = {n: fleet.servers[n, "vllm"] for n in (A, B)}
    with ThreadPoolExecutor(2) as pool:
        # two slow requests at once: least_conn gives one to each backend
        slow = [pool.submit(fleet.request, "/v1/completions?sleep=1.5", b"{}") for _ in range(2)]
        deadline = time.monotonic() + 5
        while not all(s.inflight for s in vllm.values()) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert all(s.inflight == 1 for s in vllm.values())
        started = time.monotonic()
        r = lb(fleet.config, "drain", B, "--wait", "20")
        took = time.monotonic() - started
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert out["changed"] is True and out["reloaded"] is True and out["drained"] == [B]
        assert took > 0.8 and out["waited_s"] > 0.5  # it waited for the request in flight on B
        answers = [s.result() for s in slow]
    # the requests in flight finished where they were, on the old worker processes
    assert sorted(json.loads(a[2])["backend"] for a in answers if a[0] == 200) == [A, B]
    assert set(fleet.answered("/v1/models", 8)) == {A}
    assert set(fleet.answered("/v1/audio/transcriptions", 4, b"audio")) == {A}

    st = json.loads(lb(fleet.config, "status").stdout)
    assert [(b["name"], b["state"]) for b in st["backends"]] == [(A, "active"), (B, "drained")]
    assert st["in_sync"] is True and st["nginx_running"] is True and st["old_workers"] == 0
    # what the role runs on every converge: the drain stays
    r = lb(fleet.config, "apply", "--no-reload")
    assert r.returncode == 0 and json.loads(r.stdout)["changed"] is False
    r = lb(fleet.config, "drain", B)
    assert r.returncode == 0 and json.loads(r.stdout)["changed"] is False and "already" in r.stderr
    r = lb(fleet.config, "drain", A)
    assert r.returncode == 3 and "would leave no backend" in r.stderr
    assert set(fleet.answered("/v1/models", 4)) == {A}

    r = lb(fleet.config, "restore", B)
    assert r.returncode == 0 and json.loads(r.stdout)["changed"] is True, r.stderr
    assert set(fleet.answered("/v1/models", 8)) == {A, B}
    assert "Drained: none." in Path(json.loads(fleet.config.read_text())["upstreams_file"]).read_text()


@pytest.mark.network
def test_nginx_checks_every_candidate_before_it_goes_live(fleet: Fleet) -> None:
    bad = fleet.tmp / "bad-site"
    bad.write_text("server {\n    listen 127.0.0.1:1;\n    proxy_connect_timeout soon;\n}\n")
    r = lb(fleet.config, "check-site", str(bad))
    assert r.returncode == 1 and "nginx rejects the site" in r.stderr and "proxy_connect_timeout" in r.stderr
    # a description whose upstreams nginx refuses (a service name nginx accepts, a port it does not) never
    # reaches the live file
    broken = json.loads(fleet.config.read_text())
    broken["fail_timeout"] = "99999999999999999999s"
    cand = write_json(fleet.tmp / "candidate.json", broken)
    r = lb(cand, "check-config", str(cand))
    assert r.returncode == 1 and "nginx rejects the upstreams rendered from" in r.stderr
    live = Path(broken["upstreams_file"]).read_text()
    r = lb(cand, "apply")
    assert r.returncode == 1 and "nothing was changed" in r.stderr
    assert Path(broken["upstreams_file"]).read_text() == live
    assert set(fleet.answered("/v1/models", 4)) == {A, B}
