#!/usr/bin/env bash
# Fan-out across processes: one room split over two chat processes that share it through one
# redis-server, for switchboard (RedisChannelLayer) and for Django Channels (channels_redis on
# daphne), plus switchboard's single process (in-memory layer) at the same fixed load as the
# latency baseline. Prints a table of medians and ratios.
#
#   benches/redis_compare.sh             # about 5 minutes
#   RUNS=1 DURATION=5 benches/redis_compare.sh
#
# Needs redis-server (Debian package) and, for the Channels rows, `pip install channels daphne
# channels_redis` into a venv this script makes. The two servers and redis-server share core 0,
# the load generator has core 1 (each server process runs one runtime thread). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
DURATION=${DURATION:-8}
CLIENTS=${CLIENTS:-200}
RATE=${RATE:-50}
work=$(mktemp -d)
results="$work/results.jsonl"
pids=()
cleanup() {
    for pid in "${pids[@]:-}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

command -v redis-server >/dev/null || { echo "redis-server is not installed (apt-get install redis-server)" >&2; exit 1; }
echo "building (release)..." >&2
cargo build -q --release --example chat
cargo build -q --release -p switchboard-bench
loadgen=target/release/loadgen

channels=""
if python3 -m venv "$work/venv" >/dev/null 2>&1 \
    && "$work/venv/bin/pip" install -q channels daphne channels_redis >/dev/null 2>&1; then
    channels=1
else
    echo "Django Channels not installable here: switchboard rows only" >&2
fi

wait_port() {
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return; fi
        sleep 0.1
    done
    echo "nothing listens on port $1" >&2
    exit 1
}

redis_port=6391
taskset -c 0 redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$work" >/dev/null &
pids+=($!)
wait_port "$redis_port"
redis_url="redis://127.0.0.1:$redis_port"

# start KIND PORT: a chat process on core 0; prints its pid.
start() {
    case $1 in
        single) taskset -c 0 target/release/examples/chat --addr "127.0.0.1:$2" \
                    --db "$work/chat-$2.sqlite3" --threads 1 >/dev/null 2>&1 & ;;
        redis) taskset -c 0 target/release/examples/chat --addr "127.0.0.1:$2" \
                    --db "$work/chat-$2.sqlite3" --threads 1 --redis "$redis_url" >/dev/null 2>&1 & ;;
        channels) REDIS_URL="$redis_url" PYTHONPATH=bench taskset -c 0 "$work/venv/bin/daphne" \
                    -b 127.0.0.1 -p "$2" channels_chat:application >/dev/null 2>&1 & ;;
    esac
    local pid=$!
    pids+=("$pid")
    wait_port "$2"
    echo "$pid"
}

stop() { kill "$@" 2>/dev/null || true; wait "$@" 2>/dev/null || true; }

# run SETUP SCENARIO ARGS...: one loadgen run on core 1, its JSON tagged.
run() {
    local setup=$1 scenario=$2; shift 2
    local out
    out=$(taskset -c 1 timeout 600 "$loadgen" "$@" --json) || out='{}'
    echo "{\"setup\":\"$setup\",\"scenario\":\"$scenario\",\"result\":$out}" >> "$results"
}

two=(--server 127.0.0.1:8101 --also-server 127.0.0.1:8102)
echo "== switchboard, one process, in-memory layer" >&2
a=$(start single 8100)
for _ in $(seq 1 "$RUNS"); do
    run single throughput fanout --server 127.0.0.1:8100 --clients "$CLIENTS" --senders 10 --window 16 --duration "$DURATION"
    run single latency fanout --server 127.0.0.1:8100 --clients "$CLIENTS" --senders 10 --rate "$RATE" --duration "$DURATION"
done
stop "$a"

echo "== switchboard, two processes, RedisChannelLayer" >&2
a=$(start redis 8101); b=$(start redis 8102)
for _ in $(seq 1 "$RUNS"); do
    run redis throughput fanout "${two[@]}" --clients "$CLIENTS" --senders 10 --window 16 --duration "$DURATION"
    run redis latency fanout "${two[@]}" --clients "$CLIENTS" --senders 10 --rate "$RATE" --duration "$DURATION"
done
stop "$a" "$b"

if [ -n "$channels" ]; then
    echo "== Django Channels, two daphne processes, channels_redis" >&2
    a=$(start channels 8101); b=$(start channels 8102)
    for _ in $(seq 1 "$RUNS"); do
        run channels throughput fanout "${two[@]}" --clients "$CLIENTS" --senders 10 --window 16 --duration "$DURATION"
        run channels latency fanout "${two[@]}" --clients "$CLIENTS" --senders 10 --rate "$RATE" --duration "$DURATION"
    done
    stop "$a" "$b"
fi

python3 - "$results" "$CLIENTS" "$RATE" <<'PY'
import json, statistics, sys

rows = [json.loads(line) for line in open(sys.argv[1])]
clients, rate = int(sys.argv[2]), int(sys.argv[3])
def pick(setup, scenario, key):
    values = []
    for r in rows:
        if r["setup"] == setup and r["scenario"] == scenario:
            value = r["result"]
            for part in key.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            if isinstance(value, (int, float)):
                values.append(value)
    return statistics.median(values) if values else None
def total(setup, key):
    return sum((r["result"].get(key) or 0) for r in rows if r["setup"] == setup)
def fmt(v):
    return "—" if v is None else (f"{v:,.0f}" if abs(v) >= 100 else f"{v:.1f}")

setups = [("single", "switchboard, 1 process, in memory"),
          ("redis", "switchboard, 2 processes, Redis"),
          ("channels", "Channels, 2 processes, channels_redis")]
setups = [(k, n) for k, n in setups if any(r["setup"] == k for r in rows)]
load = clients * 10 * rate
print(f"One room of {clients} clients, 10 senders; split over 2 processes in the Redis setups.\n")
print("| setup | deliveries/s (window 16) | p50 µs | p99 µs at %s deliveries/s | lost |" % f"{load:,}")
print("|---|---|---|---|---|")
for key, name in setups:
    print(f"| {name} | {fmt(pick(key, 'throughput', 'deliveries_per_s'))} | "
          f"{fmt(pick(key, 'latency', 'latency_us.p50'))} | {fmt(pick(key, 'latency', 'latency_us.p99'))} | "
          f"{total(key, 'lost')} |")
r = lambda a, b, k, s: (pick(a, s, k) or 0) / (pick(b, s, k) or float("nan"))
print()
if any(k == "channels" for k, _ in setups):
    print(f"switchboard on Redis ÷ Channels on Redis, deliveries/s: {r('redis', 'channels', 'deliveries_per_s', 'throughput'):.1f}×")
print(f"switchboard on Redis ÷ in memory, p99 at the same load: {r('redis', 'single', 'latency_us.p99', 'latency'):.2f}×")
print(f"switchboard on Redis ÷ in memory, deliveries/s: {r('redis', 'single', 'deliveries_per_s', 'throughput'):.2f}×")
PY
