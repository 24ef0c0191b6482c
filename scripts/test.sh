#!/usr/bin/env bash
# Set up everything (scripts/setup.sh: system packages, .venv, the podman test fleet), then run the
# linters, the type checker, the whole pytest suite and the Molecule scenarios.
# AIRLOCK_SKIP_MOLECULE=1 leaves the Molecule scenarios out (for a quick run); AIRLOCK_UPGRADE_SCENARIO=1 adds
# the rolling-upgrade scenario; AIRLOCK_PATCH_PROOFS=all proves every patched release, not a representative set.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff" >&2
ruff check . roles/*/files/airlock-*
echo "== mypy" >&2
mypy
# stdlib-only tools that run on the hosts and the Molecule helpers, each checked on its own
for tool in roles/*/files/airlock-* roles/loadbalancer/files/airlock_lb.py molecule/resources/files/fleet_client.py \
    molecule/resources/page_check.py; do
  mypy --strict --ignore-missing-imports --scripts-are-modules --no-error-summary "$tool"
done
echo "== ansible-lint" >&2
ansible-lint -q
echo "== pytest" >&2
pytest "$@"
if [[ ${AIRLOCK_SKIP_MOLECULE:-0} != 1 ]]; then
  scenarios=(default fleet)
  # rolling upgrades under load (three bundles, four rollouts): about half an hour more on 2 cores
  [[ ${AIRLOCK_UPGRADE_SCENARIO:-0} == 1 ]] && scenarios+=(upgrade)
  for scenario in "${scenarios[@]}"; do
    echo "== molecule test -s $scenario" >&2
    molecule test -s "$scenario"
  done
fi
