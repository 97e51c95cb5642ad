#!/usr/bin/env bash
# Start Debian's PostgreSQL on loopback and make sure the test role exists.
# Prints the admin URL the tests create their databases with. Installs PostgreSQL first when it is missing
# and we are root.
set -euo pipefail

if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
        echo "PostgreSQL is not installed; install Debian's postgresql package" >&2
        exit 1
    fi
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
fi

version=$(ls /usr/lib/postgresql | sort -n | tail -1)
if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -q "^$version main$"; then
    pg_createcluster "$version" main >&2
fi
# The test suite runs many servers and worker processes at once, each with its own pool: allow for them.
conf="/etc/postgresql/$version/main/conf.d/postroom-tests.conf"
if [ ! -f "$conf" ] && [ -d "$(dirname "$conf")" ]; then
    echo "max_connections = 400" > "$conf"
    if pg_lsclusters -h | grep -q "^$version *main .* online"; then pg_ctlcluster "$version" main restart >&2; fi
fi
if ! pg_lsclusters -h | grep -q "^$version *main .* online"; then
    pg_ctlcluster "$version" main start >&2
fi
for _ in $(seq 1 50); do
    if runuser -u postgres -- pg_isready -q -h 127.0.0.1 -p 5432; then break; fi
    sleep 0.2
done
runuser -u postgres -- psql -q -p 5432 -d postgres -v ON_ERROR_STOP=1 >&2 <<'SQL'
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'postroom') THEN
    CREATE ROLE postroom LOGIN PASSWORD 'postroom' CREATEDB;
  END IF;
END $$;
-- DROP DATABASE … WITH (FORCE) in the tests may have to end an autovacuum worker on the database.
GRANT pg_signal_backend TO postroom;
SQL
echo "postgresql://postroom:postroom@127.0.0.1:5432/postgres"
