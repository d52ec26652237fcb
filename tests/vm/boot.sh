#!/bin/bash
# tests/vm/boot.sh KITDIR INITRD RUNDIR [KERNEL-ARGS...] -- boot the test VM; runs in the foreground until
# the VM goes down (start it with & to keep it running). qemu TCG only -- never KVM: /dev/kvm on these hosts
# is PVM, which hangs Debian kernels (see ../shared/reference/vm-e2e.md). -M pc, 1 GiB (VM_MEM), a
# virtio-serial port agent.channel.0 whose host end is the unix socket RUNDIR/agent.sock, the serial console
# logged to RUNDIR/console.log, qemu's pid in RUNDIR/qemu.pid. qemu runs under `timeout` (VM_TIMEOUT
# seconds, default 300); ending this script's pid (SIGTERM) ends qemu too. The guest agent serves ttrpc on
# serial:///dev/virtio-ports/agent.channel.0 as PID 1; extra kernel arguments (e.g. agent.log=debug) follow.
set -euo pipefail
KIT=$1 INITRD=$2 RUN=$3; shift 3
mkdir -p "$RUN"
rm -f "$RUN/agent.sock" "$RUN/console.log" "$RUN/qemu.pid"
APPEND="console=ttyS0 panic=-1 quiet agent.server_addr=serial:///dev/virtio-ports/agent.channel.0 $*"
exec timeout -k 5 "${VM_TIMEOUT:-300}" qemu-system-x86_64 -M pc -accel tcg -m "${VM_MEM:-1024}" \
  -nographic -no-reboot -nodefaults -serial stdio -monitor none -pidfile "$RUN/qemu.pid" \
  -kernel "$KIT/vmlinuz" -initrd "$INITRD" -append "$APPEND" \
  -device virtio-serial \
  -chardev socket,path="$RUN/agent.sock",server=on,wait=off,id=c0 \
  -device virtserialport,chardev=c0,name=agent.channel.0 \
  < /dev/null > "$RUN/console.log" 2>&1
