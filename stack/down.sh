#!/usr/bin/env bash
# Stop what stack/up.sh started: by recorded pid or the service's own stop command.
source "$(dirname "$0")/lib.sh"

stop_pid() { # stop_pid PIDFILE NAME [nokill]: TERM, wait up to 60 s, then KILL
  local pid
  if pid_alive "$1"; then
    pid=$(cat "$1")
    [ "${3:-}" = nokill ] || { say "stopping $2 (pid $pid)"; kill "$pid"; }
    for _ in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then
      say "$2 did not stop in 60s; killing pid $pid"
      kill -9 "$pid"
    fi
  fi
  rm -f "$1"
}

stop_pid "$KAFKA_PID" Kafka

if pid_alive "$MARIADB_PID"; then
  say "stopping MariaDB"
  mariadb-admin -uroot shutdown || kill "$(cat "$MARIADB_PID")"
  stop_pid "$MARIADB_PID" MariaDB nokill
fi
rm -f "$MARIADB_PID"

if [ -f "$PG_MARK" ]; then
  say "stopping PostgreSQL $(cat "$PG_MARK")"
  pg_ctlcluster "$(cat "$PG_MARK")" main stop || true
  rm -f "$PG_MARK"
fi
say "down"
