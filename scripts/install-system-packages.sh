#!/usr/bin/env bash
# Installs the Debian packages the tests use that PyPI does not ship, if any is missing.
# For the deployment checks (tests/ops): promtool (Debian's prometheus package; the alert
# rules and the scrape config) and the shell linter. fuse3 (libfuse3 and fusermount3) for
# the power-loss tests' filesystem; and PostgreSQL's server (initdb, pg_ctl: Debian keeps
# them off PATH, in /usr/lib/postgresql/<version>/bin), which the PostgreSQL store's tests
# start. As root it runs apt-get directly; elsewhere through sudo.
set -euo pipefail

missing=()
command -v promtool >/dev/null || missing+=(prometheus)
command -v shellcheck >/dev/null || missing+=(shellcheck)
command -v fusermount3 >/dev/null || missing+=(fuse3)
compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null || command -v pg_ctl >/dev/null ||
    missing+=(postgresql)
((${#missing[@]} > 0)) || exit 0

if ! command -v apt-get >/dev/null; then
    echo "install these for the full test suite: ${missing[*]} (tests that need them skip)" >&2
    exit 0
fi
sudo=()
[[ $(id -u) -eq 0 ]] || sudo=(sudo)
echo "installing ${missing[*]} (Debian packages the tests use)"
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
