#!/usr/bin/env bash
# Installs the Debian 12 packages tributary needs (only those missing), then configures and
# builds it in build/. Idempotent: a second run installs nothing and rebuilds only what changed.
#
#   scripts/setup.sh            # packages + build
#   BUILD_DIR=out scripts/setup.sh
#   CMAKE_ARGS="-DTRIBUTARY_ASAN=ON" scripts/setup.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build}"

PACKAGES=(
  # toolchain
  g++ cmake ninja-build pkg-config git clang-format clang-tidy
  # libraries (docs/architecture.md says which library uses which)
  libzmq3-dev cppzmq-dev libsodium-dev
  libgloo-dev librocksdb-dev
  libspdlog-dev libfmt-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libopenblas-dev libutf8proc-dev
  libprotobuf-dev protobuf-compiler
  libyaml-cpp-dev nlohmann-json3-dev libcli11-dev
  libcpp-httplib-dev prometheus-cpp-dev libsystemd-dev
  # fuzzing (scripts/fuzz, docs/fuzzing.md): clang and its libFuzzer runtime (libclang_rt.fuzzer)
  clang-14 libclang-rt-14-dev
  # deployment checks: systemd-analyze / systemd-sysusers (units), dpkg-shlibdeps (the .deb's Depends)
  systemd dpkg-dev
  # test oracles and benchmark peers (Debian's CPU PyTorch, used by /usr/bin/python3 only)
  python3 python3-numpy python3-torch
  # the learning-quality study's offline data (scripts/quality/build_data.py, docs/quality.md) and its plots
  bsdgames wordnet-base fortunes jargon-text python3-matplotlib
  # the dashboard test renders the coordinator's page in headless Chromium (tests/system/dashboard_test.cc)
  chromium
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]})); then
  echo "setup: installing ${#missing[@]} missing package(s): ${missing[*]}"
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all ${#PACKAGES[@]} packages present"
fi

# The CUDA toolkit is not a Debian package: when nvcc is in /usr/local/cuda the CUDA backend is built
# (TRIBUTARY_CUDA=AUTO); otherwise the build is CPU-only.
if [[ ! -f "$BUILD_DIR/build.ninja" ]]; then
  # shellcheck disable=SC2086
  cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja ${CMAKE_ARGS:-}
fi
cmake --build "$BUILD_DIR"

# Kubernetes manifest checks (tests/deploy/kubernetes_test.sh): kubectl for `kubectl kustomize` (Debian's
# kubernetes-client when the image has no kubectl) and a small venv outside the tree with kubernetes-validate
# (the API schemas, offline). Best effort: when the package or PyPI is unreachable the build goes on and
# that test prints SKIP.
DEPLOY_SUDO=""
if [[ $(id -u) -ne 0 ]]; then DEPLOY_SUDO="sudo"; fi
deploy_apt_install() {
  DEBIAN_FRONTEND=noninteractive $DEPLOY_SUDO apt-get install -y -qq --no-install-recommends "$@" ||
    { $DEPLOY_SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $DEPLOY_SUDO apt-get install -y -qq \
      --no-install-recommends "$@"; }
}
if ! command -v kubectl >/dev/null; then
  echo "setup: installing kubernetes-client (kubectl)"
  deploy_apt_install kubernetes-client || echo "setup: kubernetes-client not installed; deploy.kubernetes will skip"
fi
DEPLOY_VENV="${XDG_CACHE_HOME:-$HOME/.cache}/tributary/venv-deploy"
if ! "$DEPLOY_VENV/bin/python" -c 'import kubernetes_validate' 2>/dev/null; then
  echo "setup: creating $DEPLOY_VENV (kubernetes-validate)"
  if ! python3 -c 'import ensurepip' 2>/dev/null; then
    deploy_apt_install python3-venv || true
  fi
  if ! { python3 -m venv "$DEPLOY_VENV" && "$DEPLOY_VENV/bin/pip" install -q 'kubernetes-validate==1.37.0'; }; then
    rm -rf "$DEPLOY_VENV"
    echo "setup: kubernetes-validate not installed (PyPI unreachable?); deploy.kubernetes will skip"
  fi
fi
