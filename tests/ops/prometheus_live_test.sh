#!/usr/bin/env bash
# A real Prometheus (Debian's package) scrapes a running agentboxd and evaluates the shipped alert
# rules; every query of the shipped Grafana dashboard runs against it.
#
#   prometheus_live_test.sh AGENTBOXD GUEST REPO
#
# agentboxd runs on jail with docker requested but unreachable (DOCKER_HOST points nowhere), so
# every new sandbox falls back: AgentboxFallbackRateHigh and AgentboxBackendUnusable must become
# active (pending: their `for` is minutes), AgentboxSelectionSuccessLow must not (every sandbox was
# still placed). A configuration file broken and SIGHUP'd must fire AgentboxConfigReloadFailed.
# Exit 77 (skip) with the reason when prometheus is missing.
set -euo pipefail
agentboxd=$1 guest=$2 repo=$3
rules=$repo/deploy/prometheus/agentbox-rules.yml
dashboard=$repo/deploy/grafana/agentbox-dashboard.json
for tool in prometheus promtool curl jq python3; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool is not installed (scripts/install-deps.sh installs it)"; exit 77; }
done
work=$(mktemp -d /tmp/agentbox-prom.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; echo "--- agentboxd log"; tail -20 "$work/agentboxd.log" || true; echo "--- prometheus log"; tail -20 "$work/prometheus.log" || true; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# agentboxd on TCP (the scrape's path), jail helper and guest from the build tree.
dport=$(free_port)
key=promtest-key
cat > "$work/agentbox.conf" <<CONF
SANDBOX_BACKEND=docker
AGENTBOX_FALLBACK_CHAIN=docker,jail
CONF
AGENTBOX_API_KEYS="prom:$key" AGENTBOX_GUEST_BIN="$guest" DOCKER_HOST=unix://$work/no-docker.sock \
  AGENTBOX_WARM_POOL_SIZE=0 AGENTBOX_MIN_FREE_BYTES=0 AGENTBOX_DEFAULT_DISK_BYTES=0 \
  "$agentboxd" --config "$work/agentbox.conf" --env-file /dev/null --listen "tcp:127.0.0.1:$dport" \
  --state-dir "$work/state" >"$work/agentboxd.log" 2>&1 &
agentboxd_pid=$!
pids+=("$agentboxd_pid")
api="http://127.0.0.1:$dport"
for _ in $(seq 100); do curl -sf "$api/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -sf "$api/healthz" >/dev/null || fail "agentboxd did not answer"

# Traffic: three sandboxes (each a fallback docker -> jail), a command in each, then destroyed.
for i in 1 2 3; do
  id=$(curl -sf -H "Authorization: Bearer $key" -X POST "$api/v1/sandboxes" -d '{}' | jq -r .data.id)
  [[ $id == sb-* ]] || fail "create $i gave no id"
  curl -sf -H "Authorization: Bearer $key" -X POST "$api/v1/sandboxes/$id/api/v1/shell/exec" \
    -d '{"id":"s","command":"echo hi"}' | jq -e '.data.output == "hi\n"' >/dev/null || fail "exec in $id"
  curl -sf -H "Authorization: Bearer $key" -X DELETE "$api/v1/sandboxes/$id" >/dev/null || fail "destroy $id"
done

# Prometheus scraping it every second, evaluating the rules every second.
pport=$(free_port)
cat > "$work/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $rules
scrape_configs:
  - job_name: agentbox
    static_configs:
      - targets: ["127.0.0.1:$dport"]
YAML
promtool check config "$work/prometheus.yml" >/dev/null || fail "promtool check config"
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
  --web.listen-address="127.0.0.1:$pport" >"$work/prometheus.log" 2>&1 &
pids+=("$!")
prom="http://127.0.0.1:$pport"
for _ in $(seq 200); do curl -sf "$prom/-/ready" >/dev/null 2>&1 && break; sleep 0.1; done
curl -sf "$prom/-/ready" >/dev/null || fail "prometheus did not become ready"

rule_state() {  # the state of one alerting rule: inactive, pending or firing
  curl -sf "$prom/api/v1/rules?type=alert" |
    jq -r --arg n "$1" '[.data.groups[].rules[] | select(.name == $n) | .state][0] // "missing"'
}
wait_state() {  # rule, wanted states (regex), seconds
  local s
  for _ in $(seq $(($3 * 2))); do
    s=$(rule_state "$1")
    [[ $s =~ ^($2)$ ]] && { echo "ok: $1 is $s"; return 0; }
    sleep 0.5
  done
  fail "$1 is $s, expected $2"
}

# Prometheus hands targets to its scraper a few seconds after start: wait for the first scrape.
for _ in $(seq 60); do
  [[ $(curl -sf "$prom/api/v1/query?query=up" | jq -r '.data.result[0].value[1] // 0') == 1 ]] && break
  sleep 0.5
done
[[ $(curl -sf "$prom/api/v1/query?query=up" | jq -r '.data.result[0].value[1] // 0') == 1 ]] ||
  fail "prometheus never scraped agentboxd"

# More traffic while Prometheus watches, so rates have at least two samples.
for i in 1 2 3 4; do
  sleep 1
  curl -sf -H "Authorization: Bearer $key" -X POST "$api/v1/sandboxes" -d '{}' | jq -r .data.id >>"$work/ids"
done
wait_state AgentboxFallbackRateHigh 'pending|firing' 30
wait_state AgentboxBackendUnusable 'pending|firing' 30
[[ $(rule_state AgentboxSelectionSuccessLow) == inactive ]] || fail "AgentboxSelectionSuccessLow is active"
[[ $(rule_state AgentboxBreakerOpen) == inactive ]] || fail "AgentboxBreakerOpen is active"
[[ $(rule_state AgentboxConfigReloadFailed) == inactive ]] || fail "AgentboxConfigReloadFailed is active before any reload"

# A broken configuration file: agentboxd keeps its settings and counts the error; the alert fires.
echo "this line is not KEY=VALUE" >>"$work/agentbox.conf"
kill -HUP "$agentboxd_pid"
wait_state AgentboxConfigReloadFailed 'firing' 30

# Every dashboard query runs against this Prometheus and agentboxd's real series.
# And every metric name the dashboard and the rules use is one agentboxd describes in /metrics.
python3 - "$dashboard" "$prom" "$api" "$rules" <<'PY'
import json, re, sys, urllib.parse, urllib.request
dash, prom, api, rules = sys.argv[1:5]
d = json.load(open(dash))
exported = set()
for line in urllib.request.urlopen(api + "/metrics").read().decode().splitlines():
    m = re.match(r"# TYPE (\S+) (\S+)", line)
    if m:
        exported.add(m.group(1))
        if m.group(2) == "histogram":
            exported.update(m.group(1) + s for s in ("_bucket", "_sum", "_count"))
used = {}
for p in d["panels"]:
    for t in p["targets"]:
        for name in re.findall(r"\bagentbox_[a-z_]+", t["expr"]):
            used.setdefault(name, f"dashboard panel {p['title']!r}")
for name in re.findall(r"\bagentbox_[a-z_]+", open(rules).read()):
    used.setdefault(name, "alert rules")
missing = sorted(f"{n} ({where})" for n, where in used.items() if n not in exported)
if missing:
    sys.exit("FAIL: not exported by agentboxd: " + ", ".join(missing))
print(f"ok: the {len(used)} metric names of the dashboard and rules are all exported")
n = 0
for p in d["panels"]:
    for t in p["targets"]:
        q = t["expr"].replace("$__rate_interval", "1m").replace('"$instance"', '".*"')
        url = prom + "/api/v1/query?" + urllib.parse.urlencode({"query": q})
        r = json.load(urllib.request.urlopen(url))
        if r["status"] != "success":
            sys.exit(f"FAIL: panel {p['title']!r}: {r}")
        n += 1
        print(f"ok: {p['title']}: {len(r['data']['result'])} series")
print(f"ok: {n} dashboard queries ran")
PY
for id in $(cat "$work/ids"); do
  curl -sf -H "Authorization: Bearer $key" -X DELETE "$api/v1/sandboxes/$id" >/dev/null || true
done
echo PASS
