#!/usr/bin/env bash
# Install the Debian 12 packages kata-agent needs to build, test, fuzz and benchmark (idempotent).
set -euo pipefail

PKGS=(
  # build
  meson ninja-build pkg-config gcc clang clang-format protobuf-c-compiler libprotobuf-c-dev
  libjson-c-dev libseccomp-dev libcap-dev
  # sanitizers and fuzzing (libFuzzer and the ASan/UBSan runtimes of Debian's clang)
  libclang-rt-14-dev
  # integration tests
  python3 python3-pytest python3-protobuf protobuf-compiler libprotobuf-dev iproute2 util-linux
  busybox-static kmod
  # CopyFile/volume tests: ext4 and xfs images on loop devices (mkfs, resize2fs, xfs_growfs)
  e2fsprogs xfsprogs
  # network tests: ping across a veth pair between two network namespaces
  iputils-ping
  # GetIPTables/SetIPTables (real iptables-save/-restore, nft backend) and the GetMetrics parser in tests
  iptables python3-prometheus-client
  # benchmarks' peers: Debian's crun and runc
  crun runc
  # VM end-to-end test (tests/vm/, tests/integration/test_vm.py): qemu TCG and the initramfs tools; the guest
  # kernel is downloaded (not installed) by tests/vm/setup.sh
  qemu-system-x86 cpio
  # Go ttrpc interop client and the benchmark's Go peer (containerd ttrpc 1.1.1, offline GOPATH build)
  golang-go golang-github-containerd-ttrpc-dev golang-github-gogo-protobuf-dev gogottrpc
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
