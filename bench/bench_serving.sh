#!/usr/bin/env bash
# Serving figures on the podman test fleet (molecule/fleet: a balancer and two workers, 2 cores shared):
# - time from the start of `ansible-playbook site.yml` (molecule converge) to the first successful chat
#   completion through the balancer, polled from the control node;
# - ASR requests/s through the balancer with one worker (the other drained with airlock-lb) and with two,
#   same load (240 requests at concurrency 8), three rounds alternating one/two workers, medians;
# - each unit's `systemd-analyze security` exposure score.
# Writes bench/results/serving.json. Needs scripts/setup.sh done (root). Leaves the fleet destroyed
# (BENCH_KEEP=1 keeps it running, e.g. for `molecule verify -s fleet`).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
out=bench/results/serving.json
work=/var/tmp/airlock-molecule-fleet
key=airlock-test-key
molecule destroy -s fleet >/dev/null 2>&1 || true
molecule create -s fleet >/dev/null # runs prepare too: builds the bundle
lb=$(podman inspect -f '{{ (index .NetworkSettings.Networks "airlock-fleet").IPAddress }}' lb1)
chat='{"model": "tiny-llama", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}'
t0=$(date +%s.%N)
molecule converge -s fleet >/tmp/bench-serving-converge.log 2>&1 &
converge=$!
first=""
while kill -0 "$converge" 2>/dev/null; do
  if curl -sf -m 10 -H "Authorization: Bearer $key" -H 'Content-Type: application/json' -d "$chat" \
      "http://$lb/v1/chat/completions" >/dev/null 2>&1; then
    first=$(python3 -c "print(round($(date +%s.%N) - $t0, 1))"); break
  fi
  sleep 2
done
wait "$converge"
t1=$(date +%s.%N)
# the balancer is configured last: the first answer can come in the last seconds of the converge, between
# two polls; then it is measured right after
for _ in $(seq 60); do
  [[ -n $first ]] && break
  if curl -sf -m 10 -H "Authorization: Bearer $key" -H 'Content-Type: application/json' -d "$chat" \
      "http://$lb/v1/chat/completions" >/dev/null 2>&1; then
    first=$(python3 -c "print(round($(date +%s.%N) - $t0, 1))")
  else
    sleep 2
  fi
done
espeak-ng -w "$work/speech.wav" "hello from the air gapped network"
podman cp molecule/resources/files/fleet_client.py lb1:/var/tmp/fleet_client.py
podman cp "$work/speech.wav" lb1:/var/tmp/speech.wav
load() {
  podman exec lb1 python3 /var/tmp/fleet_client.py http://127.0.0.1/ --key "$key" --audio /var/tmp/speech.wav \
    --only asr --requests 240 --concurrency 8
}
load >/dev/null # warm-up
ones=(); twos=()
for round in 1 2 3; do
  podman exec lb1 airlock-lb drain gpu2 --wait 60 >/dev/null
  ones+=("$(load)")
  podman exec lb1 airlock-lb restore gpu2 >/dev/null
  twos+=("$(load)")
done
one=$(printf '%s\n' "${ones[@]}" | python3 -c 'import json,sys; r=[json.loads(l) for l in sys.stdin if l.strip()]; print(json.dumps(sorted(r, key=lambda x: x["load"]["per_second"])[1]))')
two=$(printf '%s\n' "${twos[@]}" | python3 -c 'import json,sys; r=[json.loads(l) for l in sys.stdin if l.strip()]; print(json.dumps(sorted(r, key=lambda x: x["load"]["per_second"])[1]))')
rounds=$(printf '%s\n' "${ones[@]}" "${twos[@]}" | python3 -c 'import json,sys; print(json.dumps([json.loads(l)["load"]["per_second"] for l in sys.stdin if l.strip()]))')
scores=$(for h in gpu1; do for u in airlock-vllm-tiny-llama airlock-asr; do
  printf '"%s": %s,' "$u" "$(podman exec $h systemd-analyze security --no-pager $u.service | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')"
done; done)
python3 - "$first" "$(python3 -c "print(round($t1 - $t0, 1))")" "$one" "$two" "{${scores%,}}" "$rounds" \
    "$(cut -d' ' -f1-3 /proc/loadavg)" >"$out" <<'EOF'
import json, sys
first, converge, one, two, scores, rounds, loadavg = sys.argv[1:]
one, two = json.loads(one), json.loads(two)
r1, r2 = one["load"]["per_second"], two["load"]["per_second"]
print(json.dumps({
    "first_request_after_s": float(first) if first else None,
    "converge_s": float(converge),
    "asr_one_worker": one["load"], "asr_two_workers": two["load"],
    "asr_failures": len(one["failures"]) + len(two["failures"]),
    "asr_scaling": round(r2 / r1, 2), "asr_scaling_efficiency": round(r2 / r1 / 2, 2),
    "asr_rounds_per_second": {"one_worker": json.loads(rounds)[:3], "two_workers": json.loads(rounds)[3:]},
    "exposure": json.loads(scores),
    "loadavg_after": loadavg,
}, indent=2))
EOF
[[ ${BENCH_KEEP:-0} == 1 ]] || molecule destroy -s fleet >/dev/null
cat "$out"
