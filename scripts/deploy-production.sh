#!/usr/bin/env bash
# Deploys llmkg from the kustomize overlay k8s/overlays/$ENVIRONMENT.
#
#   scripts/deploy-production.sh [--dry-run]
#
#   --dry-run        render the overlay and validate every document against the Kubernetes
#                    schemas (kubernetes-validate); needs no cluster and changes nothing
#
# Environment:
#   ENVIRONMENT      staging | production | production-postgresql (default: production)
#   IMAGE_TAG        tag of llmkg/scalable-allocation to deploy (default: the overlay's)
#   KUBE_VERSION     Kubernetes version to validate against (default: 1.30.0, the oldest
#                    the manifests support: the pod-index label needs 1.28+)
#   ROLLOUT_TIMEOUT  how long to wait for the rollout (default: 600s)
#   KUBECTL          the kubectl to use (default: kubectl on PATH, else .venv/bin/kubectl)
#   HEALTH_RETRIES   health-check attempts per pod (default: 5), HEALTH_DELAY seconds
#                    between them (default: 5)
#
# A real deploy: refuse while the Secrets llmkg-tls / llmkg-jwt are missing, apply the
# rendered overlay, wait for `rollout status`, run `llmkg-server --health-check` in every
# pod, and roll back (`kubectl rollout undo`) when the rollout or a health check fails.
# Nothing secret is printed: the Secrets are not part of the overlay (see
# k8s/secrets.example.yaml), only their existence is checked, and the rendered manifests
# are written to a private temporary directory, never to the terminal.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly ROOT
readonly STS=llmkg-scalable-allocation
readonly SELECTOR=app=llmkg,component=scalable-allocation
readonly IMAGE=llmkg/scalable-allocation

ENVIRONMENT=${ENVIRONMENT:-production}
IMAGE_TAG=${IMAGE_TAG:-}
KUBE_VERSION=${KUBE_VERSION:-1.30.0}
ROLLOUT_TIMEOUT=${ROLLOUT_TIMEOUT:-600s}
HEALTH_RETRIES=${HEALTH_RETRIES:-5}
HEALTH_DELAY=${HEALTH_DELAY:-5}
DRY_RUN=false

log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

for arg in "$@"; do
    case $arg in
        --dry-run) DRY_RUN=true ;;
        -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        *) die "unknown argument: $arg (see --help)" ;;
    esac
done

case $ENVIRONMENT in
    staging | production | production-postgresql) ;;
    *) die "ENVIRONMENT must be staging, production or production-postgresql, not '$ENVIRONMENT'" ;;
esac
readonly OVERLAY=$ROOT/k8s/overlays/$ENVIRONMENT
[[ -f $OVERLAY/kustomization.yaml ]] || die "no overlay at $OVERLAY"
if [[ -n $IMAGE_TAG && ! $IMAGE_TAG =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]]; then
    die "IMAGE_TAG '$IMAGE_TAG' is not a valid image tag"
fi

# A tool from PATH, else from the project's .venv (where `make venv` installs it).
find_tool() {
    if command -v "$1" >/dev/null 2>&1; then
        command -v "$1"
    elif [[ -x $ROOT/.venv/bin/$1 ]]; then
        printf '%s\n' "$ROOT/.venv/bin/$1"
    else
        die "$1 not found: run \`make venv\` (requirements/ops.txt) or install it"
    fi
}
KUBECTL=${KUBECTL:-$(find_tool kubectl)}

WORK=$(mktemp -d)
readonly WORK
trap 'rm -rf "$WORK"' EXIT
chmod 700 "$WORK"

# Render the overlay, with the image tag and version label of IMAGE_TAG when it is given.
# kustomize accepts only relative paths to other kustomizations, hence realpath.
render() {
    local dir=$WORK/render
    mkdir -p "$dir"
    {
        printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n'
        printf 'resources:\n  - %s\n' "$(realpath --relative-to="$dir" "$OVERLAY")"
        if [[ -n $IMAGE_TAG ]]; then
            printf 'images:\n  - name: %s\n    newTag: "%s"\n' "$IMAGE" "$IMAGE_TAG"
            printf 'patches:\n  - target: {kind: StatefulSet, name: %s}\n    patch: |-\n' "$STS"
            printf '      - {op: replace, path: /metadata/labels/version, value: "%s"}\n' "$IMAGE_TAG"
            printf '      - {op: replace, path: /spec/template/metadata/labels/version, value: "%s"}\n' "$IMAGE_TAG"
        fi
    } >"$dir/kustomization.yaml"
    "$KUBECTL" kustomize "$dir" >"$WORK/manifests.yaml"
}

# Every document against the schemas of KUBE_VERSION, strictly (unknown fields fail). The
# CLI only warns about a kind it has no schema for: that is a failure here too.
validate() {
    local validator out
    validator=$(find_tool kubernetes-validate)
    if ! out=$("$validator" --strict --quiet -k "$KUBE_VERSION" "$WORK/manifests.yaml" 2>&1); then
        printf '%s\n' "$out" >&2
        die "the $ENVIRONMENT manifests do not validate against Kubernetes $KUBE_VERSION"
    fi
    if grep -E '^(WARN|ERROR|FATAL)' <<<"$out" >&2; then
        die "the $ENVIRONMENT manifests do not validate against Kubernetes $KUBE_VERSION"
    fi
    if grep -qE '^kind: Secret$' "$WORK/manifests.yaml"; then
        die "the overlay renders a Secret: secrets are created by hand (k8s/secrets.example.yaml)"
    fi
}

summary() {
    awk '/^kind:/ {kind=$2} /^  name:/ && kind {print "  " kind "/" $2; kind=""}' \
        "$WORK/manifests.yaml" >&2
}

namespace() {
    awk '/^kind: Namespace$/ {ns=1} ns && /^  name:/ {print $2; exit}' "$WORK/manifests.yaml"
}

log "rendering k8s/overlays/$ENVIRONMENT${IMAGE_TAG:+ with image tag $IMAGE_TAG}"
render
validate
NAMESPACE=$(namespace)
readonly NAMESPACE
[[ -n $NAMESPACE ]] || die "the overlay renders no Namespace"
log "valid against Kubernetes $KUBE_VERSION: namespace $NAMESPACE"
summary

if $DRY_RUN; then
    log "dry run: nothing applied"
    exit 0
fi

# ---- a real deploy from here on ----
"$KUBECTL" version --request-timeout=10s >/dev/null 2>&1 || die "no cluster reachable with $KUBECTL"

# The namespace first, so that the Secrets can be created in it if they are missing.
"$KUBECTL" create namespace "$NAMESPACE" --dry-run=client -o yaml | "$KUBECTL" apply -f - >/dev/null
# The Secrets the pods mount, as the overlay names them (production-postgresql adds one).
mapfile -t SECRETS < <(grep -o 'secretName: [a-z0-9.-]*' "$WORK/manifests.yaml" | awk '{print $2}' | sort -u)
[[ ${#SECRETS[@]} -gt 0 ]] || die "the overlay mounts no Secret: TLS and JWT keys need them"
for secret in "${SECRETS[@]}"; do
    # -o name prints only "secret/<name>": the data never reaches the terminal.
    "$KUBECTL" -n "$NAMESPACE" get secret "$secret" -o name >/dev/null 2>&1 ||
        die "Secret $secret is missing in $NAMESPACE: create it first (k8s/secrets.example.yaml)"
done

# The revision to return to; none on a first deploy.
PREVIOUS=$("$KUBECTL" -n "$NAMESPACE" get statefulset "$STS" \
    -o jsonpath='{.status.currentRevision}' 2>/dev/null || true)

rollback() {
    log "rolling back: $1"
    if [[ -z $PREVIOUS ]]; then
        die "first deploy of $STS in $NAMESPACE: nothing to roll back to; inspect with kubectl -n $NAMESPACE describe statefulset $STS"
    fi
    "$KUBECTL" -n "$NAMESPACE" rollout undo "statefulset/$STS" >&2
    # A StatefulSet does not replace a pod of the bad revision that never became ready
    # (Kubernetes' "forced rollback"): delete those pods so the controller recreates them
    # from the restored template.
    local target pod revision generations _
    # The restored revision is known once the controller has seen the undo.
    for _ in {1..30}; do
        generations=$("$KUBECTL" -n "$NAMESPACE" get statefulset "$STS" \
            -o jsonpath='{.metadata.generation} {.status.observedGeneration}')
        [[ ${generations% *} == "${generations#* }" ]] && break
        sleep 1
    done
    target=$("$KUBECTL" -n "$NAMESPACE" get statefulset "$STS" -o jsonpath='{.status.updateRevision}')
    while read -r pod revision; do
        if [[ -n $pod && $revision != "$target" ]]; then
            "$KUBECTL" -n "$NAMESPACE" delete pod "$pod" --wait=false >&2
        fi
    done < <("$KUBECTL" -n "$NAMESPACE" get pods -l "$SELECTOR" \
        -o jsonpath='{range .items[*]}{.metadata.name} {.metadata.labels.controller-revision-hash}{"\n"}{end}')
    "$KUBECTL" -n "$NAMESPACE" rollout status "statefulset/$STS" --timeout="$ROLLOUT_TIMEOUT" >&2 ||
        log "the rollback has not settled either: inspect the pods by hand"
    die "deploy of $ENVIRONMENT failed and was rolled back to $PREVIOUS"
}

log "applying to $NAMESPACE"
"$KUBECTL" apply -f "$WORK/manifests.yaml" >&2

log "waiting for statefulset/$STS (timeout $ROLLOUT_TIMEOUT)"
"$KUBECTL" -n "$NAMESPACE" rollout status "statefulset/$STS" --timeout="$ROLLOUT_TIMEOUT" >&2 ||
    rollback "the rollout did not complete"

log "health checks"
healthy() {
    local pod=$1 attempt
    for ((attempt = 1; attempt <= HEALTH_RETRIES; attempt++)); do
        if "$KUBECTL" -n "$NAMESPACE" exec "$pod" -c llmkg-server -- llmkg-server --health-check >&2; then
            return 0
        fi
        log "$pod: health check $attempt/$HEALTH_RETRIES failed"
        ((attempt == HEALTH_RETRIES)) || sleep "$HEALTH_DELAY"
    done
    return 1
}
mapfile -t PODS < <("$KUBECTL" -n "$NAMESPACE" get pods -l "$SELECTOR" -o name)
((${#PODS[@]} > 0)) || rollback "no pods found with $SELECTOR"
for pod in "${PODS[@]}"; do
    healthy "$pod" || rollback "$pod failed its health check"
done

log "deployed $ENVIRONMENT: ${#PODS[@]} pods healthy in $NAMESPACE"
