#!/usr/bin/env bash
# Offline build of the Go ttrpc interop tools (Debian packages, GOPATH mode, no network).
#
# Usage: tests/interop/build.sh OUTDIR
#
# Produces, all under OUTDIR (never in the source tree):
#   OUTDIR/gopath/src/example.com/katainterop/{grpc,types}   generated gogo+ttrpc stubs of proto/*.proto
#   OUTDIR/kata-interop    interop check client        (source: tests/interop/go/kata-interop)
#   OUTDIR/mock-agent      Go mock of the agent        (source: tests/interop/go/mock-agent)
#   OUTDIR/health-server   Go grpc.Health bench server (source: bench/rpc/goserver)
# Skips all work when every binary is newer than every input. Set KA_INTEROP_FORCE=1 to rebuild.
set -euo pipefail

die() { echo "interop/build.sh: error: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: $0 OUTDIR"

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
out=$(realpath -m "$1")

case "$out/" in
  "$root"/|"$root"/tests/*|"$root"/bench/*|"$root"/src/*|"$root"/proto/*|"$root"/tools/*|"$root"/docs/*|\
  "$root"/scripts/*|"$root"/fuzz/*|"$root"/.*|/usr/*)
    die "refusing to build into '$out' (use a scratch dir such as $root/build/interop)";;
esac
mkdir -p "$out"
# Serialize concurrent builds into the same OUTDIR (e.g. parallel test runs).
if command -v flock >/dev/null 2>&1; then
  exec 9>"$out/.build.lock"
  flock 9
fi

protos=(agent oci csi health types)
bins=(kata-interop mock-agent health-server)
inputs=("$here/build.sh" "$here/go" "$root/bench/rpc/goserver")
for p in "${protos[@]}"; do inputs+=("$root/proto/$p.proto"); done
inputs+=("$root/proto/google/protobuf/empty.proto")

# --- up to date? -----------------------------------------------------------------------
if [ "${KA_INTEROP_FORCE:-0}" != 1 ]; then
  uptodate=1
  for b in "${bins[@]}"; do
    if [ ! -x "$out/$b" ] || [ -n "$(find "${inputs[@]}" -newer "$out/$b" -print -quit)" ]; then
      uptodate=0
      break
    fi
  done
  if [ "$uptodate" = 1 ]; then
    echo "interop/build.sh: up to date in $out"
    exit 0
  fi
fi

# --- prerequisites ----------------------------------------------------------------------
need_cmd() { # cmd debian-package
  command -v "$1" >/dev/null 2>&1 || die "'$1' not found; install the Debian package '$2' (apt-get install $2)"
}
need_cmd go golang-go
need_cmd protoc protobuf-compiler
need_cmd protoc-gen-gogottrpc gogottrpc
gocode=/usr/share/gocode/src
need_src() { # import-path debian-package
  [ -d "$gocode/$1" ] || die "Go package '$1' not found under $gocode; install the Debian package '$2'"
}
need_src github.com/containerd/ttrpc golang-github-containerd-ttrpc-dev
need_src github.com/gogo/protobuf/proto golang-github-gogo-protobuf-dev
need_src github.com/gogo/protobuf/types golang-github-gogo-protobuf-dev
need_src google.golang.org/grpc/status golang-google-grpc-dev
need_src google.golang.org/genproto/googleapis/rpc/status golang-google-genproto-dev

# --- GOPATH under OUTDIR ------------------------------------------------------------------
export GO111MODULE=off GOPROXY=off GOFLAGS='' GOWORK=off
export GOPATH="$out/gopath:/usr/share/gocode" GOCACHE="$out/gocache"
src="$out/gopath/src/example.com/katainterop"
rm -rf "$src"
mkdir -p "$src/grpc" "$src/types" "$src/cmd"

# Generated code: the contract protos have no Go options, so map every file explicitly.
pkg=example.com/katainterop
M="Mtypes.proto=$pkg/types,Mgoogle/protobuf/empty.proto=github.com/gogo/protobuf/types"
for p in agent oci csi health; do M="$M,M$p.proto=$pkg/grpc"; done
gen() { # outdir protos...
  local d=$1; shift
  protoc -I"$root/proto" --gogottrpc_out="plugins=ttrpc,paths=source_relative,$M:$d" "$@"
}
gen "$src/types" "$root/proto/types.proto"
gen "$src/grpc" "$root/proto/agent.proto" "$root/proto/oci.proto" "$root/proto/csi.proto" \
  "$root/proto/health.proto"
rm -f "$src"/grpc/*_test.go "$src"/types/*_test.go

# Go sources from the repo (copied so the GOPATH tree is self-contained).
cp -R "$here/go/kata-interop" "$here/go/mock-agent" "$src/cmd/"
cp -R "$root/bench/rpc/goserver" "$src/cmd/health-server"

for b in "${bins[@]}"; do
  go build -o "$out/$b.tmp" "$pkg/cmd/$b"
  mv -f "$out/$b.tmp" "$out/$b"
done
echo "interop/build.sh: built ${bins[*]} in $out"
