#!/bin/bash
# tests/vm/mkinitrd.sh KITDIR AGENT OUT.cpio.gz -- build the guest initramfs for the VM test:
# busybox-static with its applet links, /dev/console and /dev/null, the module closure of virtio_pci and
# virtio_console (resolved with modprobe --show-depends against the kit's kernel), the static kata-agent as
# /usr/bin/kata-agent, a busybox rootfs for containers at /rootfs, and /init (tests/vm/init.sh), which
# execs the agent as PID 1.
set -euo pipefail
KIT=$1 AGENT=$2 OUT=$3
MODULES=(virtio_pci virtio_console)
HERE=$(cd "$(dirname "$0")" && pwd)
KVER=$(cat "$KIT/kver"); KT=$KIT/kernel
BUSYBOX=/bin/busybox

if ldd "$AGENT" 2>&1 | grep -q '=>'; then   # static(-pie): "statically linked" / "not a dynamic executable"
  echo "mkinitrd: $AGENT is not statically linked" >&2; exit 1
fi

ST=$(mktemp -d /tmp/ka-initrd.XXXXXX)
trap 'rm -rf "$ST"' EXIT
mkdir -p "$ST"/{bin,sbin,usr/bin,etc,proc,sys,dev,tmp,run,lib/modules/"$KVER"}
mknod -m 600 "$ST/dev/console" c 5 1
mknod -m 666 "$ST/dev/null" c 1 3
applets=$("$BUSYBOX" --list)
cp "$BUSYBOX" "$ST/bin/busybox"
for a in $applets; do [ -e "$ST/bin/$a" ] || ln -s busybox "$ST/bin/$a"; done

: > "$ST/etc/modules.load"
for m in "${MODULES[@]}"; do
  for ko in $(modprobe -d "$KT" -S "$KVER" --show-depends "$m" | awk '$1=="insmod"{print $2}'); do
    rel=${ko#"$KT/lib/modules/$KVER/"}
    grep -qxF "$rel" "$ST/etc/modules.load" && continue
    mkdir -p "$ST/lib/modules/$KVER/$(dirname "$rel")"
    cp "$ko" "$ST/lib/modules/$KVER/$rel"
    echo "$rel" >> "$ST/etc/modules.load"
  done
done

install -m 755 "$AGENT" "$ST/usr/bin/kata-agent"
echo kata-vm > "$ST/etc/hostname"

# the containers' rootfs: busybox and its applets
mkdir -p "$ST/rootfs"/{bin,proc,sys,dev,tmp,etc}
cp "$BUSYBOX" "$ST/rootfs/bin/busybox"
for a in $applets; do [ -e "$ST/rootfs/bin/$a" ] || ln -s busybox "$ST/rootfs/bin/$a"; done

install -m 755 "$HERE/init.sh" "$ST/init"
(cd "$ST" && find . -print0 | cpio --null -o -H newc --quiet) | gzip -1 > "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
