#!/usr/bin/env bash
# The test command: set-up (packages, redis-server, chromium, OpenSearch from
# Maven Central), lint and type checks, then the whole test suite. The test
# session itself starts and stops OpenSearch, Redis and the workers.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -m unit`).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/bootstrap.sh --services
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy

set +e
.venv/bin/python -m pytest -m "not gpu" "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
