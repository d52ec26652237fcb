"""A minimal container root filesystem from Debian's busybox-static, for the container tests, the demo and
bench/container: /bin/busybox, a /bin symlink for every applet, /etc/passwd and /etc/group (root, user 1000,
nobody 65534) and the usual empty directories.

    python3 tests/integration/rootfs.py DEST     # build one from the shell (prints DEST)"""
import os
import shutil
import subprocess
import sys

BUSYBOX = "/bin/busybox"  # busybox-static (scripts/install-deps.sh)

PASSWD = """root:x:0:0:root:/root:/bin/sh
user:x:1000:1000:user:/home/user:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
"""
GROUP = """root:x:0:
tty:x:5:
user:x:1000:
nogroup:x:65534:
"""
DIRS = {"proc": 0o555, "sys": 0o555, "dev": 0o755, "tmp": 0o1777, "etc": 0o755, "root": 0o700,
        "home": 0o755, "home/user": 0o755, "run": 0o755, "bin": 0o755}


def applets(busybox=BUSYBOX):
    out = subprocess.run([busybox, "--list"], check=True, capture_output=True, text=True).stdout
    return sorted(a for a in out.split() if a and "/" not in a and a != "busybox")


def build_busybox_rootfs(dest, busybox=BUSYBOX):
    """Create the rootfs at dest (which must not exist yet, or be empty); returns dest."""
    if not os.access(busybox, os.X_OK):
        raise FileNotFoundError(f"{busybox} missing: install busybox-static (scripts/install-deps.sh)")
    os.makedirs(dest, exist_ok=True)
    if os.listdir(dest):
        raise FileExistsError(f"{dest} is not empty")
    for d, mode in DIRS.items():
        os.makedirs(os.path.join(dest, d), exist_ok=True)
        os.chmod(os.path.join(dest, d), mode)
    os.chown(os.path.join(dest, "home/user"), 1000, 1000)
    shutil.copy2(busybox, os.path.join(dest, "bin/busybox"))
    os.chmod(os.path.join(dest, "bin/busybox"), 0o755)
    for a in applets(busybox):
        os.symlink("busybox", os.path.join(dest, "bin", a))
    for name, text in (("passwd", PASSWD), ("group", GROUP)):
        with open(os.path.join(dest, "etc", name), "w") as f:
            f.write(text)
    with open(os.path.join(dest, "etc/hostname"), "w") as f:
        f.write("busybox\n")
    return dest


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: rootfs.py DEST")
    print(build_busybox_rootfs(sys.argv[1]))
