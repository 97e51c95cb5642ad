#!/usr/bin/env bash
# Run every check: lint, types, the benchmark smoke run and the test suite, on SQLite and PostgreSQL.
# PostgreSQL comes from Debian's packages (installed when missing and we are root); without it the
# PostgreSQL half is skipped, unless POSTROOM_REQUIRE_POSTGRES=1 (as in CI), which makes it a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install.sh --test

if [ -z "${POSTROOM_TEST_POSTGRES_URL:-}" ]; then
    if url=$(./scripts/postgres.sh); then
        export POSTROOM_TEST_POSTGRES_URL="$url"
    elif [ "${POSTROOM_REQUIRE_POSTGRES:-}" = 1 ]; then
        echo "PostgreSQL could not be started" >&2
        exit 1
    else
        echo "PostgreSQL could not be started: its tests will be skipped" >&2
    fi
fi

.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
.venv/bin/mypy
.venv/bin/python bench/auth_overhead.py --requests 2000
.venv/bin/pytest -q "$@"
