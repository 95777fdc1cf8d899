#!/usr/bin/env bash
# Show which parts of the local stack are running.
source "$(dirname "$0")/lib.sh"
set +e
row() { printf '%-11s %-8s %s\n' "$1" "$2" "$3"; }
if pid_alive "$KAFKA_PID"; then row kafka up "pid $(cat "$KAFKA_PID"), 127.0.0.1:9092, log $KAFKA_LOG"
else row kafka down ""; fi
if mariadb-admin -uroot --connect-timeout=2 ping >/dev/null 2>&1; then
  owner="not started by the stack"; pid_alive "$MARIADB_PID" && owner="pid $(cat "$MARIADB_PID")"
  row mariadb up "$owner, 127.0.0.1:3306"
else row mariadb down ""; fi
if pg_lsclusters -h 2>/dev/null | awk '$2=="main" && $4=="online"' | grep -q .; then
  owner="not started by the stack"; [ -f "$PG_MARK" ] && owner="started by the stack"
  row postgresql up "$owner, 127.0.0.1:5432"
else row postgresql down ""; fi
if [ -x "$PY" ] && pid_alive "$KAFKA_PID"; then "$PY" "$ROOT/stack/kafka_admin.py" describe; fi
