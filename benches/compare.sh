#!/usr/bin/env bash
# switchboard's chat example against the same chat written with axum + tokio::sync::broadcast, and
# against Django Channels on daphne (when `pip install channels daphne` works), under the same
# loads from bench/'s loadgen, and a table of the figures and their ratios.
#
#   benches/compare.sh                 # about 8 minutes
#   RUNS=1 DURATION=5 benches/compare.sh
#   SKIP_CHANNELS=1 benches/compare.sh
#
# Each server runs on core 0 with one runtime thread, the load generator on core 1 (DESIGN.md,
# "Measuring on these machines"). Throughput and latency are medians of RUNS runs. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
DURATION=${DURATION:-8}
CLIENTS=${CLIENTS:-1000}
IDLE=${IDLE:-19000}
work=$(mktemp -d)
results="$work/results.jsonl"
pids=()
cleanup() {
    for pid in "${pids[@]:-}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

echo "building (release)..." >&2
cargo build -q --release --example chat
cargo build -q --release -p switchboard-bench
loadgen=target/release/loadgen

servers=(switchboard axum)
if [ -z "${SKIP_CHANNELS:-}" ]; then
    if python3 -m venv "$work/venv" >/dev/null 2>&1 \
        && "$work/venv/bin/pip" install -q channels daphne >/dev/null 2>&1; then
        servers+=(channels)
    else
        echo "Django Channels not installable here: compared with axum only" >&2
    fi
fi

port_of() { case $1 in switchboard) echo 8000 ;; axum) echo 8001 ;; channels) echo 8002 ;; esac; }

# Starts server $1 on core 0 and prints its pid.
start() {
    local port; port=$(port_of "$1")
    case $1 in
        switchboard) taskset -c 0 target/release/examples/chat --addr "127.0.0.1:$port" \
                        --db "$work/chat-$RANDOM.sqlite3" --threads 1 >/dev/null 2>&1 & ;;
        axum) taskset -c 0 target/release/axum-chat --addr "127.0.0.1:$port" --threads 1 >/dev/null 2>&1 & ;;
        channels) PYTHONPATH=bench taskset -c 0 "$work/venv/bin/daphne" -b 127.0.0.1 -p "$port" \
                        channels_chat:application >/dev/null 2>&1 & ;;
    esac
    local pid=$!
    pids+=("$pid")
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$pid"; return; fi
        sleep 0.1
    done
    echo "server $1 did not start" >&2
    exit 1
}

stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# Closed connections sit in TIME_WAIT for 60 s; a new connection that lands on one of their ports
# is reset. Wait (70 s at most) until they have cleared before a run that opens thousands.
drain_time_wait() {
    for _ in $(seq 1 35); do
        [ "$(ss -tan state time-wait | wc -l)" -lt 200 ] && return
        sleep 2
    done
}

# run SERVER SCENARIO ARGS...: one loadgen run, its JSON tagged with server and scenario.
run() {
    local server=$1 scenario=$2; shift 2
    local out
    out=$(taskset -c 1 timeout 600 "$loadgen" "$@" --server "127.0.0.1:$(port_of "$server")" --json) || out='{}'
    echo "{\"server\":\"$server\",\"scenario\":\"$scenario\",\"result\":$out}" >> "$results"
}

for server in "${servers[@]}"; do
    echo "== $server" >&2
    pid=$(start "$server")
    for _ in $(seq 1 "$RUNS"); do
        run "$server" fanout fanout --clients "$CLIENTS" --senders 10 --window 16 --size 64 --duration "$DURATION"
        run "$server" fanout_stalled fanout --clients "$CLIENTS" --senders 10 --window 16 --size 64 --duration "$DURATION" --stalled 1
        run "$server" latency fanout --clients 100 --senders 10 --rate 100 --size 64 --duration "$DURATION"
        run "$server" churn churn --concurrency 64 --duration "$DURATION" --sources 8
    done
    stop "$pid"
    # Memory per idle connection from a fresh server.
    drain_time_wait
    pid=$(start "$server")
    run "$server" idle idle --clients "$IDLE" --sources 4 --server-pid "$pid"
    stop "$pid"
done

python3 - "$results" <<'PY'
import json, statistics, sys

rows = [json.loads(line) for line in open(sys.argv[1])]
def pick(server, scenario, key):
    values = []
    for r in rows:
        if r["server"] == server and r["scenario"] == scenario:
            value = r["result"]
            for part in key.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            if isinstance(value, (int, float)):
                values.append(value)
    return statistics.median(values) if values else None
def total(server, scenario, key):
    return sum((r["result"].get(key) or 0) for r in rows if r["server"] == server and r["scenario"] == scenario)

servers = [s for s in ["switchboard", "axum", "channels"] if any(r["server"] == s for r in rows)]
metrics = [
    ("fan-out deliveries/s (1 room, %s clients, 10 senders, window 16)", "fanout", "deliveries_per_s", True),
    ("  same, one client in the room not reading", "fanout_stalled", "deliveries_per_s", True),
    ("latency p99 µs at 100k deliveries/s (100 clients)", "latency", "latency_us.p99", False),
    ("latency p50 µs at 100k deliveries/s", "latency", "latency_us.p50", False),
    ("handshakes/s (64 at a time, connect + close)", "churn", "connects_per_s", True),
    ("server KiB per idle connection", "idle", "server_kib_per_connection", False),
]
clients = next((r["result"].get("clients") for r in rows if r["scenario"] == "fanout" and r["result"]), "?")
def fmt(v):
    if v is None: return "—"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.1f}"
header = ["metric"] + servers + [f"switchboard ÷ {s}" for s in servers[1:]]
lines = [header]
for label, scenario, key, higher in metrics:
    label = label % clients if "%s" in label else label
    values = [pick(s, scenario, key) for s in servers]
    ratios = []
    for v in values[1:]:
        if values[0] is None or v in (None, 0):
            ratios.append("—")
        else:
            r = values[0] / v
            ratios.append(f"{r:.2f}×" + ("" if higher else " (lower is better)"))
    lines.append([label] + [fmt(v) for v in values] + ratios)
widths = [max(len(str(row[i])) for row in lines) for i in range(len(header))]
for n, row in enumerate(lines):
    print("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |")
    if n == 0:
        print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
print()
for s in servers:
    lost = total(s, "fanout", "lost") + total(s, "fanout_stalled", "lost") + total(s, "latency", "lost")
    dup = total(s, "fanout", "duplicates") + total(s, "fanout_stalled", "duplicates") + total(s, "latency", "duplicates")
    ooo = total(s, "fanout", "out_of_order") + total(s, "fanout_stalled", "out_of_order") + total(s, "latency", "out_of_order")
    idle_failed = total(s, "idle", "failed")
    print(f"{s}: lost {lost}, duplicated {dup}, out of order {ooo} (all fan-out runs); idle connections refused: {idle_failed}")
PY
