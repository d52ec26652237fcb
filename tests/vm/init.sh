#!/bin/sh
# tests/vm/init.sh -- /init of the VM test's initramfs: mount proc, sysfs and devtmpfs, load the virtio
# modules, make the /dev/virtio-ports/<name> links (udev's job elsewhere), then exec kata-agent as PID 1.
# The agent does the rest of init's work itself (devpts, /dev/shm, /run, cgroups, hostname, lo).
export PATH=/bin:/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs dev /dev
while read -r m; do
  insmod "/lib/modules/$(uname -r)/$m" || echo "VM-INIT insmod $m failed" > /dev/console
done < /etc/modules.load
mkdir -p /dev/virtio-ports
for _ in 1 2 3 4 5 6 7 8 9 10; do   # the ports appear as the virtio devices probe
  ls /sys/class/virtio-ports/*/name > /dev/null 2>&1 && break
  sleep 0.1
done
for p in /sys/class/virtio-ports/*; do
  [ -e "$p/name" ] && ln -sf "../${p##*/}" "/dev/virtio-ports/$(cat "$p/name")"
done
echo "VM-INIT exec kata-agent uptime=$(cut -d' ' -f1 /proc/uptime)" > /dev/console
exec /usr/bin/kata-agent
