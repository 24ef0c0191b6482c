#!/usr/bin/env bash
# First converge and idempotent rerun of site.yml, for one host (molecule/default) and for three
# (molecule/fleet: a balancer and two GPU workers), on the podman test fleet. Writes
# bench/results/deploy.json. Needs scripts/setup.sh done (root).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
out=bench/results/deploy-molecule.json
results=()
for scenario in default fleet; do
  molecule destroy -s "$scenario" >/dev/null 2>&1 || true
  molecule create -s "$scenario" >/dev/null
  molecule prepare -s "$scenario" >/dev/null
  t0=$(date +%s.%N); molecule converge -s "$scenario" >/tmp/bench-converge-1.log 2>&1; t1=$(date +%s.%N)
  molecule converge -s "$scenario" >/tmp/bench-converge-2.log 2>&1; t2=$(date +%s.%N)
  changed=$(grep -Eo 'changed=[0-9]+' /tmp/bench-converge-2.log | cut -d= -f2 | paste -sd+ | python3 -c "import sys; print(eval(sys.stdin.read() or '0'))")
  hosts=$(grep -Ec '^.{0,40}(airlock1|lb1|gpu1|gpu2) +: ok=' /tmp/bench-converge-2.log || true)
  molecule destroy -s "$scenario" >/dev/null
  results+=("$(printf '{"scenario": "%s", "hosts": %s, "first_converge_s": %.1f, "rerun_s": %.1f, "rerun_changed": %s}' \
    "$scenario" "$hosts" "$(python3 -c "print($t1 - $t0)")" "$(python3 -c "print($t2 - $t1)")" "$changed")")
done
printf '[\n  %s\n]\n' "$(IFS=,; echo "${results[*]}" | sed 's/},{/},\n  {/g')" >"$out"
cat "$out"
