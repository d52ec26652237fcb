#!/usr/bin/env bash
# Set up and run the demo on a fresh Debian 12 machine (as root): install the dependencies, build, start
# kata-agent on a unix socket and drive it with kata-agent-ctl as the Kata runtime would.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
bash scripts/build.sh

work=$(mktemp -d /tmp/kata-agent-demo.XXXXXX)
sock="$work/agent.sock"
: >"$work/cmdline"
./build/kata-agent --cmdline "$work/cmdline" --server-addr "unix://$sock" >"$work/agent.log" 2>&1 &
agent=$!
cleanup() {
  kill "$agent" 2>/dev/null && wait "$agent" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 100); do [[ -S $sock ]] && break; sleep 0.05; done

export KATA_AGENT_ADDR="unix://$sock"
run() {
  echo "\$ kata-agent-ctl $*"
  ./build/kata-agent-ctl "$@"
  echo
}
run health
run version
run guest-details
echo "agent log:"
cat "$work/agent.log"
