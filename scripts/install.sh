#!/usr/bin/env bash
# Install Postroom into ./.venv (idempotent). With --test, also the test tools.
# Versions are pinned by requirements.lock.
set -euo pipefail
cd "$(dirname "$0")/.."

extras=""
if [ "${1:-}" = "--test" ]; then extras="[test]"; fi

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
    echo "Postroom needs Python 3.11 or newer as '$python' (set PYTHON=/path/to/python3.11)" >&2
    exit 1
fi
if [ ! -x .venv/bin/python ]; then
    if ! "$python" -m venv .venv 2>/dev/null; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
            rm -rf .venv && "$python" -m venv .venv
        else
            echo "could not create a virtual environment; install your distribution's python3-venv" >&2
            exit 1
        fi
    fi
fi
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
.venv/bin/python -m pip install -q -c requirements.lock -e ".${extras}" 2>&1 | grep -v '^WARNING: Location' || true
.venv/bin/python -c 'import postroom' || { echo "installation failed" >&2; exit 1; }
echo "Postroom installed in .venv (run .venv/bin/postroom --help)" >&2
