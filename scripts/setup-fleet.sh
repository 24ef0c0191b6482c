#!/usr/bin/env bash
# Set up the offline test fleet for the Ansible roles (as root, Debian 12): podman able to run containers
# whose PID 1 is systemd, the base image localhost/airlock-debian-systemd:12 built with debootstrap (no
# registry), the internal network airlock-fleet (no default route), and the Ansible/Molecule tooling in
# .venv/ from requirements-deploy.txt. Idempotent and quick when already done.
# See RECIPES.md section 1 for why each setting is there.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=localhost/airlock-debian-systemd:12
NETWORK=airlock-fleet
SUITE=bookworm
IMAGE_PACKAGES=systemd,systemd-sysv,dbus,python3,python3-apt,python3-venv,python3-packaging,iproute2,iputils-ping,procps,sudo,ca-certificates

say() { echo "setup-fleet: $*" >&2; }

if ((EUID != 0)); then
  say "must run as root (apt-get, rootful podman, debootstrap)"
  exit 1
fi

# 1. System packages, only those missing.
need_apt=()
for pkg in podman runc netavark aardvark-dns iptables debootstrap dpkg-dev; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$' || need_apt+=("$pkg")
done
if ((${#need_apt[@]})); then
  say "installing ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# 2. /etc/containers/containers.conf: add each setting only where the file does not set it already.
# runc: crun 1.8 refuses the hybrid cgroup layout; ulimits: the host's hard nofile is below podman's default.
mkdir -p /etc/containers
python3 - /etc/containers/containers.conf <<'PY'
import sys, tomllib
from pathlib import Path

path = Path(sys.argv[1])
wanted = {
    "containers": {"default_ulimits": '["nofile=16384:16384", "nproc=16384:16384"]'},
    "engine": {"runtime": '"runc"'},
    "network": {"network_backend": '"netavark"'},
}
text = path.read_text() if path.exists() else ""
current = tomllib.loads(text)
lines = text.splitlines()
added = []
for section, keys in wanted.items():
    for key, value in keys.items():
        if key in current.get(section, {}):
            continue
        entry = f"{key} = {value}"
        header = next((i for i, line in enumerate(lines) if line.strip() == f"[{section}]"), None)
        if header is None:
            lines += ["", f"[{section}]", entry] if lines else [f"[{section}]", entry]
        else:
            lines.insert(header + 1, entry)
        added.append(f"{section}.{key}")
if added:
    new = "\n".join(lines).lstrip("\n") + "\n"
    tomllib.loads(new)  # never leave a broken file behind
    path.write_text(new)
    print(f"setup-fleet: {path}: set {', '.join(added)}", file=sys.stderr)
runtime = current.get("engine", {}).get("runtime", "runc")
if runtime != "runc":
    print(f"setup-fleet: warning: {path} keeps engine.runtime = {runtime!r}; systemd containers on this"
          " kind of host (hybrid cgroups) need runc", file=sys.stderr)
PY

# 3. The CNI config left by the package only produces warnings with netavark.
if [[ -e /etc/cni/net.d/87-podman-bridge.conflist ]]; then
  say "removing /etc/cni/net.d/87-podman-bridge.conflist"
  rm -f /etc/cni/net.d/87-podman-bridge.conflist
fi

# 4. Base image, built only when missing (about 1 minute, 211 MB).
debian_mirror() {
  # The URI apt is configured with for the main suite (one-line sources.list or deb822 .sources).
  python3 - "$SUITE" <<'PY'
import re, sys
from pathlib import Path

suite = sys.argv[1]
files = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*.list")),
         *sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))]
for path in files:
    if not path.is_file():
        continue
    text = path.read_text()
    if path.suffix == ".sources":
        for stanza in re.split(r"\n\s*\n", text):
            fields = {}
            for line in stanza.splitlines():
                m = re.match(r"^([A-Za-z-]+):\s*(.*)$", line)
                if m:
                    fields[m.group(1).lower()] = m.group(2).split()
            if (fields.get("enabled", ["yes"])[0] != "no" and "deb" in fields.get("types", [])
                    and suite in fields.get("suites", []) and fields.get("uris")):
                print(fields["uris"][0])
                sys.exit(0)
    else:
        for line in text.splitlines():
            words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
            if len(words) >= 3 and words[0] == "deb" and words[2] == suite:
                print(words[1])
                sys.exit(0)
print("http://deb.debian.org/debian")
PY
}

# `podman image exists`: 0 present, 1 missing, anything else podman itself is broken (say, a runtime that is
# not installed): stop before spending a minute on debootstrap.
image_rc=0
podman image exists "$IMAGE" || image_rc=$?
if ((image_rc > 1)); then
  say "podman does not work here (podman image exists: exit $image_rc)"
  exit 1
fi
if ((image_rc == 1)); then
  mirror=$(debian_mirror)
  rootfs=$(mktemp -d /var/tmp/airlock-rootfs.XXXXXX)
  trap 'rm -rf --one-file-system "$rootfs" "$rootfs.log"' EXIT
  say "building $IMAGE with debootstrap from $mirror (about 1 min)"
  debootstrap --variant=minbase --include="$IMAGE_PACKAGES" "$SUITE" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || {
    tail -20 "$rootfs.log" >&2
    exit 1
  }
  rm -f "$rootfs.log"
  # An air-gapped host: no apt source, a machine-id generated at boot, no consoles or periodic jobs.
  : >"$rootfs/etc/machine-id"
  rm -f "$rootfs/var/lib/dbus/machine-id"
  : >"$rootfs/etc/apt/sources.list"
  rm -f "$rootfs"/etc/systemd/system/getty.target.wants/* \
    "$rootfs"/etc/systemd/system/timers.target.wants/* \
    "$rootfs"/lib/systemd/system/timers.target.wants/* \
    "$rootfs"/lib/systemd/system/multi-user.target.wants/getty.target
  ln -sf /dev/null "$rootfs/etc/systemd/system/getty.target"
  ln -sf /dev/null "$rootfs/etc/systemd/system/console-getty.service"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log \
    "$rootfs"/tmp/* "$rootfs"/var/tmp/*
  tar -C "$rootfs" --numeric-owner -c . | podman import -q \
    --change 'CMD ["/sbin/init"]' --change 'ENV container=podman' --change 'STOPSIGNAL SIGRTMIN+3' \
    - "$IMAGE" >/dev/null
  rm -rf --one-file-system "$rootfs"
  trap - EXIT
  say "built $IMAGE"
fi

# 5. The fleet's network: internal (no default route), created here because molecule's podman destroy
# deletes any network it is told about.
if ! podman network exists "$NETWORK"; then
  say "creating internal network $NETWORK"
  podman network create --internal "$NETWORK" >/dev/null
fi

# 6. Ansible, Molecule and ansible-lint in .venv (scripts/setup.sh owns the rest of it).
[[ -x .venv/bin/python ]] || python3 -m venv .venv
stamp=.venv/.airlock-setup-fleet
want=$(sha256sum requirements-deploy.txt | cut -d' ' -f1)
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  say "installing requirements-deploy.txt into .venv"
  # (the machine's pip config names find-links folders that may not exist: drop that noise)
  .venv/bin/python -m pip install -q -r requirements-deploy.txt 2>&1 | { grep -v '^WARNING: Location' || true; } >&2
  echo "$want" >"$stamp"
fi
say "ready: image $IMAGE, network $NETWORK, $(.venv/bin/python -c 'from importlib.metadata import version as v
print("ansible-core", v("ansible-core") + ", molecule", v("molecule"))')"
