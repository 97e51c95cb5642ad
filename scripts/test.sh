#!/usr/bin/env bash
# Run every check: lint, types, the benchmark smoke run and the test suite, on SQLite and PostgreSQL.
# PostgreSQL comes from Debian's packages (installed when missing and we are root); without it the
# PostgreSQL half is skipped, unless POSTROOM_REQUIRE_POSTGRES=1 (as in CI), which makes it a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install.sh --test

# swaks (Debian's SMTP test client) drives the SMTP relay tests and redis-server the Redis rate-limit store's;
# without them those tests are skipped (in CI, with POSTROOM_REQUIRE_POSTGRES=1, they fail instead).
for package in swaks redis-server; do  # each package installs a command of its own name
    if ! command -v "$package" >/dev/null; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >&2 \
                || echo "$package could not be installed: its tests will be skipped" >&2
        else
            echo "$package is not installed: its tests will be skipped" >&2
        fi
    fi
done

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

# The dashboard's browser tests drive Debian's Chromium (/usr/bin/chromium) through Playwright.
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2
    else
        echo "Chromium is not installed (apt-get install chromium): the browser tests will fail" >&2
    fi
fi

.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
.venv/bin/mypy
.venv/bin/mypy bench  # the benchmarks import each other through their folder, so they are checked on their own
.venv/bin/mypy tests
.venv/bin/python bench/auth_overhead.py --requests 2000
# Two workers (pytest-xdist): most tests wait on live servers, so two share the two cores well. Each worker starts
# its own servers and databases; POSTROOM_TEST_WORKERS=0 runs everything in one process.
.venv/bin/pytest -q -n "${POSTROOM_TEST_WORKERS:-2}" "$@"
