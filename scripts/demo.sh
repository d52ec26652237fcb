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

# A container through the agent, as the Kata runtime and shim drive it (kata-agent-ctl run: CreateSandbox,
# CreateContainer, StartContainer, stdio, WaitProcess, RemoveContainer, DestroySandbox). This agent runs in a
# private mount namespace with its own tmpfs on /run (holding /run/kata-containers and /run/sandbox-ns, as in a
# Kata guest), so nothing it creates or mounts reaches the host or outlives it. The rootfs is busybox-static
# with a symlink per applet (tests/integration/rootfs.py).
echo "== a busybox container"
python3 tests/integration/rootfs.py "$work/rootfs" >/dev/null
csock="$work/sandbox.sock"
# shellcheck disable=SC2016 # $@ is expanded by the inner sh
unshare --mount --propagation private -- sh -c \
  'mount -t tmpfs -o mode=755 kata-run /run && mkdir -p /run/kata-containers /run/sandbox-ns && exec "$@"' \
  sh ./build/kata-agent --cmdline "$work/cmdline" --server-addr "unix://$csock" >"$work/sandbox-agent.log" 2>&1 &
sandbox_agent=$!
cleanup_container_demo() {
  { kill "$sandbox_agent" 2>/dev/null && wait "$sandbox_agent" 2>/dev/null; } || true
  cleanup
}
trap cleanup_container_demo EXIT
for _ in $(seq 100); do [[ -S $csock ]] && break; sleep 0.05; done

echo "\$ kata-agent-ctl -a unix://$csock run --id demo $work/rootfs -- echo hello"
if ! out=$(./build/kata-agent-ctl -a "unix://$csock" run --id demo "$work/rootfs" -- echo hello </dev/null); then
  echo "FAILED: kata-agent-ctl run; agent log:" >&2
  tail -n 40 "$work/sandbox-agent.log" >&2
  exit 1
fi
echo "$out"
if [[ $out != hello ]]; then
  echo "FAILED: expected 'hello' from the container, got '$out'" >&2
  exit 1
fi
# DestroySandbox ends the agent: it must exit by itself, with status 0
for _ in $(seq 100); do kill -0 "$sandbox_agent" 2>/dev/null || break; sleep 0.05; done
if kill -0 "$sandbox_agent" 2>/dev/null; then
  echo "FAILED: the agent is still running 5 s after DestroySandbox" >&2
  exit 1
fi
status=0
wait "$sandbox_agent" || status=$?
if ((status != 0)); then
  echo "FAILED: the agent exited with status $status after DestroySandbox; log:" >&2
  tail -n 40 "$work/sandbox-agent.log" >&2
  exit 1
fi
echo "(the agent exited after DestroySandbox, status 0)"
echo
