#!/bin/bash
# tests/vm/setup.sh [KITDIR] -- prepare the VM test kit: host packages (qemu TCG, busybox-static, kmod, cpio)
# and the Debian cloud kernel, downloaded and unpacked into KITDIR (never installed on the host), depmod'ed.
# KITDIR defaults to $KA_VM_KIT or /var/tmp/ka-vm-kit; a kit that is already complete is reused as is.
# Prints the kit directory on the last line of stdout.
set -euo pipefail
KIT=${1:-${KA_VM_KIT:-/var/tmp/ka-vm-kit}}
export DEBIAN_FRONTEND=noninteractive

need=()
for p in qemu-system-x86 busybox-static kmod cpio; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if ((${#need[@]})); then
  echo "setup: installing ${need[*]}" >&2
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ -s "$KIT/kver" ] && [ -f "$KIT/vmlinuz" ] && [ -d "$KIT/kernel/lib/modules/$(cat "$KIT/kver")" ]; then
  echo "$KIT"; exit 0
fi

mkdir -p "$KIT"
tmp=$(mktemp -d "$KIT/.dl.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# The ABI number in the versioned package changes with security updates: resolve it from the metapackage.
KPKG=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
if [ -z "$KPKG" ]; then
  apt-get update -qq
  KPKG=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
fi
[ -n "$KPKG" ] || { echo "setup: cannot resolve linux-image-cloud-amd64" >&2; exit 1; }
echo "setup: downloading $KPKG" >&2
(cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root "$KPKG" >/dev/null) || {
  apt-get update -qq
  (cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root "$KPKG" >/dev/null)
}
dpkg-deb -x "$tmp"/"$KPKG"_*.deb "$tmp/kernel"
KVER=$(ls "$tmp/kernel/lib/modules")
depmod -b "$tmp/kernel" "$KVER"
rm -rf "$KIT/kernel"
mv "$tmp/kernel" "$KIT/kernel"
ln -sfn "kernel/boot/vmlinuz-$KVER" "$KIT/vmlinuz"
echo "$KVER" > "$KIT/kver.tmp" && mv "$KIT/kver.tmp" "$KIT/kver"   # written last: marks the kit complete
echo "setup: kernel $KVER in $KIT" >&2
echo "$KIT"
