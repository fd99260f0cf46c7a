#!/usr/bin/env bash
# Deploys llmkg from the kustomize overlay k8s/overlays/$ENVIRONMENT.
#
#   scripts/deploy-production.sh [--dry-run]
#
#   --dry-run        render the overlay and validate every document against the Kubernetes
#                    schemas (kubernetes-validate); needs no cluster and changes nothing
#
# Environment:
#   ENVIRONMENT      staging | production | production-postgresql | production-partitioned
#                    (default: production)
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
# An overlay with several StatefulSets (production-partitioned: one per zone) is rolled
# out one StatefulSet after the other: two rolling at once could restart both replicas of
# a partition together (a rolling update does not ask the PodDisruptionBudgets).
# Nothing secret is printed: the Secrets are not part of the overlay (see
# k8s/secrets.example.yaml), only their existence is checked, and the rendered manifests
# are written to a private temporary directory, never to the terminal.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly ROOT
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
    staging | production | production-postgresql | production-partitioned) ;;
    *) die "ENVIRONMENT must be staging, production, production-postgresql or production-partitioned, not '$ENVIRONMENT'" ;;
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
            printf 'patches:\n  - target: {kind: StatefulSet, labelSelector: "%s"}\n    patch: |-\n' "$SELECTOR"
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

# The rendered documents split in two: each StatefulSet in a file of its own
# ($WORK/statefulset-<name>.yaml, its name appended to STATEFULSETS, in rendering order),
# every other document in $WORK/others.yaml.
STATEFULSETS=()
split_manifests() {
    local dir=$WORK/split doc name
    mkdir -p "$dir"
    awk -v dir="$dir" '
        BEGIN { n = 0; out = sprintf("%s/%04d.yaml", dir, n) }
        /^---$/ { close(out); n++; out = sprintf("%s/%04d.yaml", dir, n); next }
        { print > out }
    ' "$WORK/manifests.yaml"
    : >"$WORK/others.yaml"
    for doc in "$dir"/*.yaml; do
        if grep -q '^kind: StatefulSet$' "$doc"; then
            name=$(awk '/^  name:/ {print $2; exit}' "$doc")
            cp "$doc" "$WORK/statefulset-$name.yaml"
            STATEFULSETS+=("$name")
        else
            { printf -- '---\n'; cat "$doc"; } >>"$WORK/others.yaml"
        fi
    done
}

log "rendering k8s/overlays/$ENVIRONMENT${IMAGE_TAG:+ with image tag $IMAGE_TAG}"
render
validate
NAMESPACE=$(namespace)
readonly NAMESPACE
[[ -n $NAMESPACE ]] || die "the overlay renders no Namespace"
log "valid against Kubernetes $KUBE_VERSION: namespace $NAMESPACE"
summary
split_manifests
((${#STATEFULSETS[@]} > 0)) || die "the overlay renders no StatefulSet"

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

# The revision of each StatefulSet to return to; none on a first deploy.
declare -A PREVIOUS
for sts in "${STATEFULSETS[@]}"; do
    PREVIOUS[$sts]=$("$KUBECTL" -n "$NAMESPACE" get statefulset "$sts" \
        -o jsonpath='{.status.currentRevision}' 2>/dev/null || true)
done
# The StatefulSets applied so far, in order: a rollback undoes them.
APPLIED=()

undo() {
    local sts=$1 target pod revision generations _
    if [[ -z ${PREVIOUS[$sts]} ]]; then
        log "first deploy of $sts: nothing to roll back to; inspect with kubectl -n $NAMESPACE describe statefulset $sts"
        return 1
    fi
    "$KUBECTL" -n "$NAMESPACE" rollout undo "statefulset/$sts" >&2
    # A StatefulSet does not replace a pod of the bad revision that never became ready
    # (Kubernetes' "forced rollback"): delete those pods so the controller recreates them
    # from the restored template.
    # The restored revision is known once the controller has seen the undo.
    for _ in {1..30}; do
        generations=$("$KUBECTL" -n "$NAMESPACE" get statefulset "$sts" \
            -o jsonpath='{.metadata.generation} {.status.observedGeneration}')
        [[ ${generations% *} == "${generations#* }" ]] && break
        sleep 1
    done
    target=$("$KUBECTL" -n "$NAMESPACE" get statefulset "$sts" -o jsonpath='{.status.updateRevision}')
    while read -r pod revision; do
        # This StatefulSet's pods only: <name>-<ordinal>.
        if [[ $pod =~ ^$sts-[0-9]+$ && $revision != "$target" ]]; then
            "$KUBECTL" -n "$NAMESPACE" delete pod "$pod" --wait=false >&2
        fi
    done < <("$KUBECTL" -n "$NAMESPACE" get pods -l "$SELECTOR" \
        -o jsonpath='{range .items[*]}{.metadata.name} {.metadata.labels.controller-revision-hash}{"\n"}{end}')
    "$KUBECTL" -n "$NAMESPACE" rollout status "statefulset/$sts" --timeout="$ROLLOUT_TIMEOUT" >&2 ||
        log "the rollback of $sts has not settled either: inspect its pods by hand"
    log "statefulset/$sts rolled back to ${PREVIOUS[$sts]}"
}

# Undo the StatefulSets applied, the last first and one at a time (as they rolled out).
rollback() {
    log "rolling back: $1"
    local i complete=true
    for ((i = ${#APPLIED[@]} - 1; i >= 0; i--)); do
        undo "${APPLIED[i]}" || complete=false
    done
    $complete || die "deploy of $ENVIRONMENT failed and could not be rolled back entirely"
    die "deploy of $ENVIRONMENT failed and was rolled back"
}

log "applying to $NAMESPACE"
"$KUBECTL" apply -f "$WORK/others.yaml" >&2
for sts in "${STATEFULSETS[@]}"; do
    APPLIED+=("$sts")
    "$KUBECTL" apply -f "$WORK/statefulset-$sts.yaml" >&2
    log "waiting for statefulset/$sts (timeout $ROLLOUT_TIMEOUT)"
    "$KUBECTL" -n "$NAMESPACE" rollout status "statefulset/$sts" --timeout="$ROLLOUT_TIMEOUT" >&2 ||
        rollback "statefulset/$sts did not complete its rollout"
done

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
