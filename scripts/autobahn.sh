#!/usr/bin/env bash
# Runs the Autobahn TestSuite's fuzzingclient against the echo example and prints the count of
# each outcome (OK, NON-STRICT, INFORMATIONAL, UNIMPLEMENTED, FAILED); exits 1 if any case FAILED.
#
#   scripts/autobahn.sh                 # every case (about a minute)
#   CASES='1.*,2.*,3.*,4.*,5.*,6.*,7.*,9.1.*,10.*' scripts/autobahn.sh
#
# PyPI's autobahntestsuite is Python 2 only: this builds a 2.7 virtualenv from the CPython 2.7
# under pyenv's versions/ (virtualenv 20.21.1, the last that makes 2.7 environments, run from a
# throwaway Python 3 venv), once, into $AUTOBAHN_HOME (default ~/.cache/switchboard-autobahn).
set -euo pipefail
cd "$(dirname "$0")/.."

CASES=${CASES:-*}
home=${AUTOBAHN_HOME:-$HOME/.cache/switchboard-autobahn}
python27=$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/2.7*/bin/python2.7 2>/dev/null | head -1)
if [ ! -x "$home/py27/bin/wstest" ]; then
    [ -n "$python27" ] || { echo "no CPython 2.7 under pyenv's versions/: cannot run Autobahn" >&2; exit 2; }
    python3 -m venv "$home/venv3"
    "$home/venv3/bin/pip" install -q virtualenv==20.21.1
    "$home/venv3/bin/virtualenv" -q -p "$python27" "$home/py27"
    "$home/py27/bin/pip" install -q autobahntestsuite==25.10.1
fi

cargo build -q --release --example echo
work=$(mktemp -d)
port=9001
target/release/examples/echo --addr "127.0.0.1:$port" >/dev/null 2>&1 &
echo_pid=$!
trap 'kill $echo_pid 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

cases_json=$(python3 -c 'import json,sys; print(json.dumps([c.strip() for c in sys.argv[1].split(",")]))' "$CASES")
cat > "$work/fuzzingclient.json" <<JSON
{
  "outdir": "$work/reports",
  "servers": [{ "agent": "switchboard", "url": "ws://127.0.0.1:$port" }],
  "cases": $cases_json,
  "exclude-cases": [],
  "exclude-agent-cases": {}
}
JSON
(cd "$work" && "$home/py27/bin/wstest" -m fuzzingclient -s fuzzingclient.json >"$work/wstest.log" 2>&1)

python3 - "$work/reports/index.json" <<'PY'
import collections, json, sys
index = json.load(open(sys.argv[1]))
outcomes = collections.Counter()
failed = []
for agent, cases in index.items():
    for case, result in cases.items():
        outcomes[result["behavior"]] += 1
        if result["behavior"] == "FAILED" or result.get("behaviorClose") == "FAILED":
            failed.append(case)
for name in ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]:
    print(f"{name}: {outcomes.get(name, 0)}")
if failed:
    print("failed cases: " + ", ".join(sorted(failed, key=lambda c: [int(p) for p in c.split('.')])))
    sys.exit(1)
PY
