#!/usr/bin/env bash
# deploy.kubernetes: renders every kustomization under deploy/kubernetes/ (the base and each overlay) with
# `kubectl kustomize`, then kubernetes_check.py validates every document against the Kubernetes API schemas
# (kubernetes-validate, strict: unknown fields fail), runs the daemon configs embedded in the ConfigMaps
# through `tributary ... config` with the containers' exact args, checks the manifests agree with them
# (PVC at data_dir, keys in Secret mounts, probes on the HTTP port, Services, PDBs, GPU requests) and
# that broken copies are caught.
#   bash tests/deploy/kubernetes_test.sh PATH/TO/tributary
# Environment: KUBECTL (default kubectl), TRIBUTARY_DEPLOY_VENV (default
# ${XDG_CACHE_HOME:-$HOME/.cache}/tributary/venv-deploy, made by scripts/setup.sh),
# KUBERNETES_VERSION (schemas to validate against, default 1.30).
# Without kubectl or the venv it prints one SKIP line and exits 77.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TRIBUTARY="${1:?usage: kubernetes_test.sh PATH/TO/tributary}"
KUBECTL="${KUBECTL:-kubectl}"
VENV="${TRIBUTARY_DEPLOY_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/tributary/venv-deploy}"
KUBERNETES_VERSION="${KUBERNETES_VERSION:-1.30}"

if ! command -v "$KUBECTL" >/dev/null; then
  echo "SKIP: no $KUBECTL on PATH (scripts/setup.sh installs Debian's kubernetes-client); manifests not validated"
  exit 77
fi
if ! "$VENV/bin/python" -c 'import kubernetes_validate' 2>/dev/null; then
  echo "SKIP: no kubernetes-validate in $VENV (scripts/setup.sh makes it if PyPI is reachable); manifests not validated"
  exit 77
fi
if [[ ! -x $TRIBUTARY ]]; then
  echo "FAIL: $TRIBUTARY is not built (ninja tributary)"
  exit 1
fi

work="$(mktemp -d /tmp/tributary-k8s-test.XXXXXX)"
trap 'rm -rf "$work"' EXIT
mkdir "$work/rendered" "$work/configs"

echo "kubectl: $("$KUBECTL" version --client 2>/dev/null | head -1)"
renderings=()
while IFS= read -r kustomization; do
  dir="$(dirname "$kustomization")"
  name="$(basename "$dir")"
  out="$work/rendered/$name.yaml"
  # Kustomize v5 warns about bases/patchesStrategicMerge (kept for kubectl 1.20); anything else is shown.
  if ! "$KUBECTL" kustomize "$dir" >"$out" 2>"$work/stderr"; then
    echo "FAIL: $KUBECTL kustomize ${dir#"$ROOT"/}:"
    cat "$work/stderr"
    exit 1
  fi
  grep -v "^# Warning: '\(bases\|patchesStrategicMerge\)' is deprecated" "$work/stderr" || true
  echo "rendered ${dir#"$ROOT"/}"
  renderings+=("$out")
done < <(find "$ROOT/deploy/kubernetes" -name kustomization.yaml | sort)

version="$(sed -n 's/^project(tributary VERSION \([0-9.]*\).*/\1/p' "$ROOT/CMakeLists.txt")"
exec "$VENV/bin/python" "$ROOT/tests/deploy/kubernetes_check.py" --tributary "$TRIBUTARY" \
  --kubernetes-version "$KUBERNETES_VERSION" --project-version "$version" --work "$work/configs" --repo "$ROOT" \
  "${renderings[@]}"
