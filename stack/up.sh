#!/usr/bin/env bash
# Start the local stack (Kafka KRaft, PostgreSQL, MariaDB) on 127.0.0.1. Idempotent:
# anything already running is left alone, so a second `make up` returns in seconds.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/services.sh"
mkdir -p "$STATE" "$KAFKA_STATE" "$MARIADB_STATE"
[ -x "$PY" ] || die "no virtualenv at .venv; run 'make install' first"

mkdir -p /var/lib/wado/storage  # the default WADO_STORAGE_ROOTS
start_postgres
start_mariadb
start_kafka
say "up: Kafka 127.0.0.1:9092, PostgreSQL 127.0.0.1:5432, MariaDB 127.0.0.1:3306"
