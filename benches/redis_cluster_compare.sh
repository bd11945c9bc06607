#!/usr/bin/env bash
# Fan-out across four chat processes that share their rooms through Redis: on one redis-server
# (`--redis`) against a three-primary Redis Cluster (`--redis-cluster`, sharded pub/sub), same
# run. Two loads: one room of 200 clients split over the four processes (10 senders), and four
# rooms of 50 clients at once (each room's clients split over the four processes too), so that
# rooms spread over the cluster's shards. Prints a table of medians and ratios.
#
#   benches/redis_cluster_compare.sh             # about 4 minutes
#   RUNS=1 DURATION=4 benches/redis_cluster_compare.sh
#
# Needs redis-server and redis-cli (Debian package redis-server). The chat processes and every
# Redis node share core 0 (one runtime thread per chat process), the load generators core 1:
# on a 2-core machine this measures what the cluster costs, not what more cores would give it.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
DURATION=${DURATION:-6}
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

wait_port() {
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return; fi
        sleep 0.1
    done
    echo "nothing listens on port $1" >&2
    exit 1
}

# redis PORT [ARGS...]: a redis-server on core 0.
redis() {
    local port=$1; shift
    taskset -c 0 redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
        --dir "$work" --dbfilename "dump-$port.rdb" "$@" >/dev/null &
    pids+=($!)
    wait_port "$port"
}

redis 6391
for port in 7391 7392 7393; do
    redis "$port" --cluster-enabled yes --cluster-config-file "$work/nodes-$port.conf" \
        --cluster-node-timeout 2000
done
redis-cli --cluster create 127.0.0.1:7391 127.0.0.1:7392 127.0.0.1:7393 --cluster-yes >/dev/null
for _ in $(seq 1 100); do
    ok=0
    for port in 7391 7392 7393; do
        redis-cli -p "$port" cluster info | grep -q cluster_state:ok && ok=$((ok + 1))
    done
    [ "$ok" = 3 ] && break
    sleep 0.1
done

# start SETUP PORT: a chat process on core 0; prints its pid.
start() {
    local share
    case $1 in
        redis) share=(--redis redis://127.0.0.1:6391) ;;
        cluster) share=(--redis-cluster redis://127.0.0.1:7391,redis://127.0.0.1:7392) ;;
    esac
    taskset -c 0 target/release/examples/chat --addr "127.0.0.1:$2" \
        --db "$work/chat-$1-$2.sqlite3" --threads 1 "${share[@]}" >/dev/null 2>&1 &
    local pid=$!
    pids+=("$pid")
    wait_port "$2"
    echo "$pid"
}

stop() { kill "$@" 2>/dev/null || true; wait "$@" 2>/dev/null || true; }

four=(--server 127.0.0.1:8101 --also-server 127.0.0.1:8102 --also-server 127.0.0.1:8103 --also-server 127.0.0.1:8104)

# run SETUP SCENARIO ARGS...: one loadgen run on core 1, its JSON tagged.
run() {
    local setup=$1 scenario=$2; shift 2
    local out
    out=$(taskset -c 1 timeout 600 "$loadgen" "$@" --json) || out='{}'
    echo "{\"setup\":\"$setup\",\"scenario\":\"$scenario\",\"result\":$out}" >> "$results"
}

# rooms SETUP ROUND: four rooms at once, one loadgen each; one line with their sum.
rooms() {
    local setup=$1 round=$2 outs=() n
    for n in 1 2 3 4; do
        taskset -c 1 timeout 600 "$loadgen" fanout "${four[@]}" --clients $((CLIENTS / 4)) \
            --senders 5 --window 16 --duration "$DURATION" --room "r$round-$n-$setup" --json \
            > "$work/rooms-$n.json" &
        outs+=($!)
    done
    wait "${outs[@]}"
    python3 - "$work" "$setup" >> "$results" <<'PY'
import json, sys
work, setup = sys.argv[1], sys.argv[2]
parts = []
for n in range(1, 5):
    try:
        parts.append(json.load(open(f"{work}/rooms-{n}.json")))
    except (OSError, ValueError):
        parts.append({})
total = {"deliveries_per_s": sum(p.get("deliveries_per_s") or 0 for p in parts),
         "lost": sum(p.get("lost") or 0 for p in parts),
         "duplicates": sum(p.get("duplicates") or 0 for p in parts),
         "out_of_order": sum(p.get("out_of_order") or 0 for p in parts)}
print(json.dumps({"setup": setup, "scenario": "rooms", "result": total}))
PY
}

for round in $(seq 1 "$RUNS"); do
    # Alternate which setup goes first, so that drift on the shared machine favours neither.
    order=(redis cluster)
    [ $((round % 2)) = 0 ] && order=(cluster redis)
    for setup in "${order[@]}"; do
        echo "== round $round: four chat processes on $setup" >&2
        ps=($(start "$setup" 8101) $(start "$setup" 8102) $(start "$setup" 8103) $(start "$setup" 8104))
        run "$setup" throughput fanout "${four[@]}" --clients "$CLIENTS" --senders 10 --window 16 --duration "$DURATION"
        run "$setup" latency fanout "${four[@]}" --clients "$CLIENTS" --senders 10 --rate "$RATE" --duration "$DURATION"
        rooms "$setup" "$round"
        stop "${ps[@]}"
    done
done

python3 - "$results" "$CLIENTS" "$RATE" <<'PY'
import json, statistics, sys

rows = [json.loads(line) for line in open(sys.argv[1])]
clients, rate = int(sys.argv[2]), int(sys.argv[3])
def values(setup, scenario, key):
    out = []
    for r in rows:
        if r["setup"] == setup and r["scenario"] == scenario:
            value = r["result"]
            for part in key.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            if isinstance(value, (int, float)):
                out.append(value)
    return out
def pick(setup, scenario, key):
    v = values(setup, scenario, key)
    return statistics.median(v) if v else None
def total(setup, key):
    return sum((r["result"].get(key) or 0) for r in rows if r["setup"] == setup)
def fmt(v):
    return "—" if v is None else (f"{v:,.0f}" if abs(v) >= 100 else f"{v:.1f}")

names = {"redis": "4 processes, one redis-server", "cluster": "4 processes, 3-primary cluster"}
load = clients * 10 * rate
print(f"One room of {clients} clients (10 senders), and four rooms of {clients // 4} (5 senders each) at once;")
print("every room split over the four processes. Medians of %d rounds.\n" % len(values("redis", "throughput", "deliveries_per_s")))
print("| setup | one room, deliveries/s (window 16) | four rooms, deliveries/s | p50 µs | p99 µs at %s deliveries/s | lost | duplicates | out of order |" % f"{load:,}")
print("|---|---|---|---|---|---|---|---|")
for key, name in names.items():
    print(f"| {name} | {fmt(pick(key, 'throughput', 'deliveries_per_s'))} | {fmt(pick(key, 'rooms', 'deliveries_per_s'))} | "
          f"{fmt(pick(key, 'latency', 'latency_us.p50'))} | {fmt(pick(key, 'latency', 'latency_us.p99'))} | "
          f"{total(key, 'lost')} | {total(key, 'duplicates')} | {total(key, 'out_of_order')} |")
r = lambda s, k: (pick("cluster", s, k) or 0) / (pick("redis", s, k) or float("nan"))
print()
print(f"cluster ÷ one server, one room deliveries/s: {r('throughput', 'deliveries_per_s'):.2f}×")
print(f"cluster ÷ one server, four rooms deliveries/s: {r('rooms', 'deliveries_per_s'):.2f}×")
print(f"cluster ÷ one server, p99 at the same load: {r('latency', 'latency_us.p99'):.2f}×")
PY
