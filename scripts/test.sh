#!/usr/bin/env bash
# Run every test: unit tests and integration tests against the normal build and the ASan+UBSan build,
# the Go ttrpc interop test, and a short fuzzing smoke run. Must run as root on Debian 12.
# Prints one closing line: "N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.."

if [[ $(id -u) != 0 ]]; then
  echo "scripts/test.sh must run as root (namespaces, mounts, cgroups)" >&2
  exit 2
fi
bash scripts/install-deps.sh || exit 1
bash scripts/build.sh --asan --release || { echo "build failed"; exit 1; }

results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT
status=0

for dir in build build-asan; do
  echo "=== unit tests ($dir)"
  meson test -C "$dir" --suite unit --print-errorlogs || status=1
  cp "$dir/meson-logs/testlog.junit.xml" "$results/unit-$dir.xml" 2>/dev/null
  echo "=== integration tests ($dir)"
  KA_BUILD_DIR="$PWD/$dir" /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration \
    --junitxml="$results/integration-$dir.xml" || status=1
done

echo "=== fuzzing smoke run"
bash fuzz/run.sh 20 || status=1

/usr/bin/python3 - "$results" <<'PY'
import glob, sys, xml.etree.ElementTree as ET
passed = failed = skipped = 0
for f in glob.glob(sys.argv[1] + "/*.xml"):
    for tc in ET.parse(f).getroot().iter("testcase"):
        kids = {c.tag for c in tc}
        if kids & {"failure", "error"}:
            failed += 1
        elif "skipped" in kids:
            skipped += 1
        else:
            passed += 1
print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
PY
exit $status
