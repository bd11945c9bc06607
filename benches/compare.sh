#!/usr/bin/env bash
# switchboard's chat example and the Channels tutorial's consumer on switchboard
# (examples/tutorial.rs) against: a chat written with axum + tokio::sync::broadcast (TCP_NODELAY
# on, as axum's docs show; AXUM_UNTUNED=1 adds the old row without it), the floor (bench/'s
# `floor`: plain tokio-tungstenite that writes each connection's ready messages with one flush),
# and Django Channels on daphne (when `pip install channels daphne` works); the same loads from
# bench/'s loadgen; a table of the figures and of each switchboard row's ratio to the floor and
# to axum, as the median of same-round pairs.
#
#   benches/compare.sh                 # about 15 minutes
#   RUNS=1 DURATION=5 benches/compare.sh
#   SKIP_CHANNELS=1 SKIP_IDLE=1 benches/compare.sh
#   SERVERS="chat floor" benches/compare.sh   # a subset
#   SERVERS="chat chat_b floor" CHAT_B_ENV="SWITCHBOARD_WRITE_BUFFER_SIZE=131072" \
#       SCENARIOS="fanout latency" benches/compare.sh   # an A/B of the chat in the same rounds
#   SERVERS="chat chat_b" CHAT_B_BIN=/tmp/old/target/release/examples/chat benches/compare.sh
#       # the same against another build (e.g. a worktree of the previous commit)
#   SERVERS="chat chat_h2" SCENARIOS="churn fanout" benches/compare.sh
#       # the chat loaded over HTTP/1.1 (a TCP connection per WebSocket) and over HTTP/2
#       # (RFC 8441: HTTP2_PER_CONNECTION WebSockets, default 100, on each connection)
#
# Each server runs on core 0 with one runtime thread, the load generator on core 1 (DESIGN.md,
# "Measuring on these machines"). Every round runs every server once, in turn, so that drift on
# the shared machine lands on all of them. Loopback only.
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
cargo build -q --release --example chat --example tutorial
cargo build -q --release -p switchboard-bench
loadgen=target/release/loadgen

read -r -a servers <<< "${SERVERS:-chat tutorial axum floor}"
[ -n "${AXUM_UNTUNED:-}" ] && servers+=(axum_untuned)
if [ -z "${SKIP_CHANNELS:-}" ] && [ -z "${SERVERS:-}" ]; then
    if python3 -m venv "$work/venv" >/dev/null 2>&1 \
        && "$work/venv/bin/pip" install -q channels daphne >/dev/null 2>&1; then
        servers+=(channels)
    else
        echo "Django Channels not installable here: compared without it" >&2
    fi
fi

port_of() {
    case $1 in
        chat) echo 8000 ;; axum) echo 8001 ;; channels) echo 8002 ;; floor) echo 8003 ;;
        tutorial) echo 8004 ;; axum_untuned) echo 8005 ;; chat_b) echo 8006 ;; chat_h2) echo 8007 ;;
    esac
}

# Starts server $1 on core 0 and prints its pid.
start() {
    local port; port=$(port_of "$1")
    case $1 in
        # The chat's inbound rate limit stays on (its cost is counted) but out of the loads' way.
        chat|chat_h2) SWITCHBOARD_RATE_LIMIT_MESSAGES=1000000,1000000 SWITCHBOARD_RATE_LIMIT_BYTES=off \
                taskset -c 0 target/release/examples/chat --addr "127.0.0.1:$port" \
                    --db "$work/chat-$RANDOM.sqlite3" --threads 1 >/dev/null 2>&1 & ;;
        chat_b) read -r -a assignments <<< "${CHAT_B_ENV:-}"
                env SWITCHBOARD_RATE_LIMIT_MESSAGES=1000000,1000000 SWITCHBOARD_RATE_LIMIT_BYTES=off "${assignments[@]}" \
                    taskset -c 0 "${CHAT_B_BIN:-target/release/examples/chat}" --addr "127.0.0.1:$port" \
                    --db "$work/chat-$RANDOM.sqlite3" --threads 1 >/dev/null 2>&1 & ;;
        tutorial) taskset -c 0 target/release/examples/tutorial --addr "127.0.0.1:$port" \
                    --threads 1 >/dev/null 2>&1 & ;;
        axum) taskset -c 0 target/release/axum-chat --addr "127.0.0.1:$port" --threads 1 >/dev/null 2>&1 & ;;
        axum_untuned) taskset -c 0 target/release/axum-chat --addr "127.0.0.1:$port" --threads 1 \
                    --no-nodelay >/dev/null 2>&1 & ;;
        floor) taskset -c 0 target/release/floor --addr "127.0.0.1:$port" --threads 1 >/dev/null 2>&1 & ;;
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

# run SERVER ROUND SCENARIO ARGS...: one loadgen run, its JSON tagged.
run() {
    local server=$1 round=$2 scenario=$3; shift 3
    local out transport=()
    [ "$server" = chat_h2 ] && transport=(--http2 "${HTTP2_PER_CONNECTION:-100}")
    out=$(taskset -c 1 timeout 600 "$loadgen" "$@" "${transport[@]}" --server "127.0.0.1:$(port_of "$server")" --json) || out='{}'
    echo "{\"server\":\"$server\",\"round\":$round,\"scenario\":\"$scenario\",\"result\":$out}" >> "$results"
}

for round in $(seq 1 "$RUNS"); do
    for server in "${servers[@]}"; do
        echo "== round $round: $server" >&2
        pid=$(start "$server")
        for scenario in ${SCENARIOS:-fanout fanout_stalled latency churn}; do
            case $scenario in
                fanout) run "$server" "$round" fanout fanout --clients "$CLIENTS" --senders 10 --window 16 --size 64 --duration "$DURATION" ;;
                fanout_stalled) run "$server" "$round" fanout_stalled fanout --clients "$CLIENTS" --senders 10 --window 16 --size 64 --duration "$DURATION" --stalled 1 ;;
                latency) run "$server" "$round" latency fanout --clients 100 --senders 10 --rate 100 --size 64 --duration "$DURATION" ;;
                churn) run "$server" "$round" churn churn --concurrency 64 --duration "$DURATION" --sources 8 --rooms 100 --message ;;
                *) echo "unknown scenario $scenario (fanout, fanout_stalled, latency, churn)" >&2; exit 1 ;;
            esac
        done
        stop "$pid"
    done
done
if [ -z "${SKIP_IDLE:-}" ]; then
    for server in "${servers[@]}"; do
        # Memory per idle connection from a fresh server: IDLE connections in 100 rooms.
        echo "== idle: $server" >&2
        drain_time_wait
        pid=$(start "$server")
        run "$server" 1 idle idle --clients "$IDLE" --per-room $((IDLE / 100)) --sources 4 --server-pid "$pid"
        stop "$pid"
    done
fi

# The raw results stay for a closer look (one JSON line per run).
cp "$results" "${RESULTS:-/tmp/switchboard-compare.jsonl}"
echo "raw results: ${RESULTS:-/tmp/switchboard-compare.jsonl}" >&2

case " ${servers[*]} " in
    *" chat_b "*) echo "chat B: ${CHAT_B_BIN:-target/release/examples/chat} with ${CHAT_B_ENV:-no settings}" ;;
esac
python3 - "$results" <<'PY'
import json, statistics, sys

rows = [json.loads(line) for line in open(sys.argv[1])]
def value(r, key):
    v = r["result"]
    for part in key.split("."):
        v = v.get(part) if isinstance(v, dict) else None
    return v if isinstance(v, (int, float)) else None
def runs(server, scenario, key):
    return {r["round"]: value(r, key) for r in rows
            if r["server"] == server and r["scenario"] == scenario and value(r, key) is not None}
def pick(server, scenario, key):
    v = list(runs(server, scenario, key).values())
    return statistics.median(v) if v else None
def ratio(a, b, scenario, key):
    """The median over rounds of a's figure over b's in the same round."""
    ra, rb = runs(a, scenario, key), runs(b, scenario, key)
    pairs = [ra[n] / rb[n] for n in ra if n in rb and rb[n]]
    return statistics.median(pairs) if pairs else None
def total(server, scenario, key):
    return sum((r["result"].get(key) or 0) for r in rows if r["server"] == server and r["scenario"] == scenario)

names = {"chat": "chat", "chat_b": "chat B", "chat_h2": "chat over HTTP/2", "tutorial": "tutorial", "axum": "axum (nodelay)", "axum_untuned": "axum (Nagle on)",
         "floor": "floor", "channels": "Channels"}
servers = [s for s in names if any(r["server"] == s for r in rows)]
metrics = [
    ("fan-out deliveries/s (1 room, %s clients, 10 senders, window 16)", "fanout", "deliveries_per_s", True),
    ("  same, one client in the room not reading", "fanout_stalled", "deliveries_per_s", True),
    ("latency p99 µs at 100k deliveries/s (100 clients)", "latency", "latency_us.p99", False),
    ("latency p50 µs at 100k deliveries/s", "latency", "latency_us.p50", False),
    ("churn: connect, say one message, hear it, leave (/s, 100 rooms)", "churn", "connects_per_s", True),
    ("server KiB per idle connection (in 100 rooms)", "idle", "server_kib_per_connection", False),
]
clients = next((r["result"].get("clients") for r in rows if r["scenario"] == "fanout" and r["result"]), "?")
def fmt(v):
    if v is None: return "—"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.1f}"
pairs = [(a, b) for a in ("chat", "chat_b", "tutorial") for b in ("floor", "axum") if a in servers and b in servers]
for other in ("chat_b", "chat_h2"):
    if other in servers and "chat" in servers:
        pairs.append((other, "chat"))
header = ["metric"] + [names[s] for s in servers] + [f"{a} ÷ {names[b]}" for a, b in pairs]
lines = [header]
for label, scenario, key, higher in metrics:
    label = label % clients if "%s" in label else label
    cells = [fmt(pick(s, scenario, key)) for s in servers]
    for a, b in pairs:
        r = ratio(a, b, scenario, key)
        cells.append("—" if r is None else f"{r:.2f}×")
    lines.append([label] + cells)
widths = [max(len(str(row[i])) for row in lines) for i in range(len(header))]
for n, row in enumerate(lines):
    print("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |")
    if n == 0:
        print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
print()
print("Ratios: the median over rounds of the two servers' figures in the same round; for latency")
print("and memory, lower is better (a ratio under 1× is the switchboard row ahead).")
for r in rows:
    if (r["result"].get("lost") or 0) > 0 and r["server"] in ("chat", "chat_b", "chat_h2", "floor", "axum"):
        print(f"  {names[r['server']]}, round {r['round']}, {r['scenario']}: lost {r['result']['lost']}")
for s in servers:
    lost = sum(total(s, sc, "lost") for sc in ("fanout", "fanout_stalled", "latency"))
    dup = sum(total(s, sc, "duplicates") for sc in ("fanout", "fanout_stalled", "latency"))
    ooo = sum(total(s, sc, "out_of_order") for sc in ("fanout", "fanout_stalled", "latency"))
    print(f"{names[s]}: lost {lost}, duplicated {dup}, out of order {ooo} (fan-out runs); "
          f"churn cycles failed {total(s, 'churn', 'failed')}; idle connections refused {total(s, 'idle', 'failed')}")
PY
