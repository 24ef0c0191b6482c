#!/usr/bin/env bash
# Set up everything on a fresh Debian/Ubuntu machine (as root): system packages, then .venv/ with the
# packager and its development tools. Idempotent and quick when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
for tool in minisign:minisign espeak-ng:espeak-ng sox:sox chromium:chromium chromedriver:chromium-driver; do
  cmd=${tool%%:*}; pkg=${tool##*:}
  command -v "$cmd" >/dev/null 2>&1 || need_apt+=("$pkg")
done
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
if ((${#need_apt[@]})); then
  echo "setup: installing ${need_apt[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

stamp=.venv/.airlock-setup
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [[ ! -x .venv/bin/python || ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  echo "setup: creating .venv" >&2
  [[ -x .venv/bin/python ]] || python3 -m venv .venv
  # this machine's pip config may name file:// indexes that do not exist for every package: quiet that noise
  quiet() { "$@" 2> >(grep -v -e 'is ignored: it is neither a file nor a directory' -e '^$' >&2); }
  quiet .venv/bin/python -m pip install -q --upgrade pip
  quiet .venv/bin/python -m pip install -q -e '.[build,dev,asr]'
  echo "$want" >"$stamp"
fi

# The offline test fleet (podman, the systemd base image, the internal network) and the deploy tools.
bash scripts/setup-fleet.sh
