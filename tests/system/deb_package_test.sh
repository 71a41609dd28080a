#!/usr/bin/env bash
# The Debian package end to end (docs/deploy.md): builds the .deb from the build directory with
# cpack (into a temporary directory: the build tree keeps no package), checks its Depends and files,
# installs it with dpkg, runs /usr/bin/tributary version, checks the units are where systemd looks and
# verify, then purges it and checks nothing of it is left. Root only; prints SKIP and exits 77
# without root, dpkg, cpack or dpkg-shlibdeps, or where a tributary is already installed (never
# touched). A trap purges the package whatever fails.
#   tests/system/deb_package_test.sh BUILD_DIR
set -euo pipefail
skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }

[[ $(id -u) -eq 0 ]] || skip "installing a .deb needs root"
BUILD_DIR="$(cd "${1:?usage: deb_package_test.sh BUILD_DIR}" && pwd)"
for tool in dpkg dpkg-deb dpkg-query cpack dpkg-shlibdeps; do
  command -v "$tool" >/dev/null || skip "$tool is not installed (scripts/setup.sh installs dpkg-dev and cmake)"
done
[[ -x "$BUILD_DIR/cli/tributary" ]] || fail "$BUILD_DIR/cli/tributary is not built"
if dpkg-query -W -f='${Status}' tributary 2>/dev/null | grep -q installed; then
  skip "a tributary package is installed on this machine; the test does not touch it"
fi
[[ ! -e /usr/bin/tributary ]] || skip "/usr/bin/tributary exists (not from this test); the test does not touch it"

work="$(mktemp -d)"
installed=0
user_existed=0
if getent passwd tributary >/dev/null; then user_existed=1; fi
cleanup() {
  if ((installed)); then dpkg --purge tributary >/dev/null 2>&1 || echo "cleanup: dpkg --purge tributary failed"; fi
  # The package leaves its system user on purge (Debian practice); one this test made goes again.
  if ((!user_existed)) && getent passwd tributary >/dev/null; then
    userdel tributary 2>/dev/null || true
    groupdel tributary 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

echo "building the package (cpack -G DEB) in $work"
if ! cpack -G DEB --config "$BUILD_DIR/CPackConfig.cmake" -B "$work" >"$work/cpack.log" 2>&1; then
  cat "$work/cpack.log"
  fail "cpack -G DEB failed"
fi
deb="$(ls "$work"/tributary_*.deb)"
echo "package: $(basename "$deb")"

# Runtime dependencies (dpkg-shlibdeps) name the Debian library packages of the binary's NEEDED list.
depends="$(dpkg-deb -f "$deb" Depends)"
echo "Depends: $depends"
for pkg in libzmq5 libsodium23 librocksdb7.8 libprotobuf32 libyaml-cpp0.7 libsystemd0 libfmt9 libc6 systemd; do
  grep -qE "(^|, )$pkg( |,|$)" <<<"$depends" || fail "Depends lacks $pkg"
done

files=(
  /usr/bin/tributary
  /usr/lib/systemd/system/tributary-coordinator.service
  /usr/lib/systemd/system/tributary-worker@.service
  /usr/lib/sysusers.d/tributary.conf
  /usr/share/doc/tributary/README.md
  /usr/share/doc/tributary/deploy.md
  /usr/share/doc/tributary/examples/coordinator.yaml
  /usr/share/doc/tributary/examples/worker.yaml
)
listing="$(dpkg-deb -c "$deb")"
for f in "${files[@]}"; do
  grep -q " \.$f\$" <<<"$listing" || fail "the package lacks $f"
done
if grep -q " \./etc/" <<<"$listing"; then fail "the package writes to /etc (examples belong in /usr/share/doc)"; fi

installed=1
dpkg -i "$deb" >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log"; fail "dpkg -i failed"; }
/usr/bin/tributary version >"$work/version.txt" || fail "/usr/bin/tributary version failed"
grep -q "tributary" "$work/version.txt" || fail "unexpected version output: $(cat "$work/version.txt")"
echo "installed: $(head -1 "$work/version.txt")"
getent passwd tributary >/dev/null || fail "postinst did not create the tributary user"

for unit in tributary-coordinator.service tributary-worker@.service; do
  path="/usr/lib/systemd/system/$unit"
  grep -q "^ExecStart=/usr/bin/tributary " "$path" || fail "$path: ExecStart does not name /usr/bin/tributary"
done
if command -v systemd-analyze >/dev/null; then
  systemd-analyze unit-paths | grep -qx /usr/lib/systemd/system || fail "systemd does not read /usr/lib/systemd/system"
  out="$(systemd-analyze verify --man=no /usr/lib/systemd/system/tributary-coordinator.service 2>&1 | grep tributary || true)"
  [[ -z "$out" ]] || fail "systemd-analyze verify: $out"
fi

mapfile -t owned < <(dpkg -L tributary)
dpkg --purge tributary >"$work/purge.log" 2>&1 || { cat "$work/purge.log"; fail "dpkg --purge failed"; }
installed=0
if dpkg-query -W -f='${Status}' tributary 2>/dev/null | grep -q installed; then fail "still installed after purge"; fi
for path in "${owned[@]}"; do
  [[ -d "$path" ]] && continue  # shared directories (/usr/bin, ...) stay
  [[ ! -e "$path" ]] || fail "$path is left after dpkg --purge"
done
[[ ! -d /usr/share/doc/tributary ]] || fail "/usr/share/doc/tributary is left after dpkg --purge"
echo "PASS: built, installed, ran /usr/bin/tributary version, purged; ${#owned[@]} paths gone"
