#!/usr/bin/env bash
# Start the local stack (Kafka KRaft, PostgreSQL, MariaDB) on 127.0.0.1. Idempotent:
# what the stack already runs is left alone, so a second `make up` returns in seconds;
# servers of the machine's own (on other ports) are never used or touched.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/services.sh"
mkdir -p "$STATE" "$KAFKA_STATE" "$MARIADB_STATE"
[ -x "$PY" ] || die "no virtualenv at .venv; run 'make install' first"

mkdir -p /var/lib/wado/storage  # the default WADO_STORAGE_ROOTS
start_postgres
start_mariadb
start_kafka
ensure_dcmtk
say "up: Kafka 127.0.0.1:$KAFKA_PORT, PostgreSQL 127.0.0.1:$PG_PORT, MariaDB 127.0.0.1:$MARIADB_PORT"
