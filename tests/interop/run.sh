#!/usr/bin/env bash
# make interop: bring the real openQA stack (Debian 12 packages, with the Perl worker to compare with) up
# when it is not, run the interop tests against it, and stop it again afterwards (only if this script
# started it), whatever happened.
set -uo pipefail
REALSTACK=${1:?realstack dir}; PY=${2:?python}; shift 2
url=${QAWORKER_REAL_WEBUI:-http://127.0.0.1:9526}
started=0
if ! curl -sf -o /dev/null "$url/api/v1/workers"; then
    if [ "$(id -u)" != 0 ]; then echo "interop: the real stack needs root to start" >&2; exit 1; fi
    # With the Perl worker (instance 1, WORKER_CLASS realstack): the suite compares every scenario with it.
    # qaworker's tests use their own worker classes and instances, so the two never take each other's jobs.
    out=$(bash "$REALSTACK/up.sh") || { echo "interop: up.sh failed" >&2; echo "$out" >&2; exit 1; }
    echo "$out" | grep -E '^(BASE_URL|API_KEY)=' >&2
    started=1
fi
export QAWORKER_REAL_WEBUI=$url
export QAWORKER_REALSTACK=$(cd "$REALSTACK" && pwd)
export QAWORKER_REAL_KEY=${QAWORKER_REAL_KEY:-${REALSTACK_KEY:-AAAABBBBCCCCDDDD}}
export QAWORKER_REAL_SECRET=${QAWORKER_REAL_SECRET:-${REALSTACK_SECRET:-0000111122223333}}
"$PY" -m pytest -m interop tests/interop -p no:cacheprovider -q "$@"
rc=$?
if [ "$started" = 1 ] && [ -z "${QAWORKER_KEEP_REALSTACK:-}" ]; then
    bash "$REALSTACK/down.sh" >/dev/null 2>&1 || echo "interop: down.sh failed" >&2
fi
exit $rc
