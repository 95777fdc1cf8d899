#!/usr/bin/env bash
# Show which parts of the local stack are running (its own instances, lib.sh's ports).
source "$(dirname "$0")/lib.sh"
set +e
row() { printf '%-11s %-8s %s\n' "$1" "$2" "$3"; }
show() { # show NAME PIDFILE PORT LOG
  if pid_alive "$2"; then row "$1" up "pid $(head -n 1 "$2"), 127.0.0.1:$3, log $4"
  elif port_open "$3"; then row "$1" foreign "127.0.0.1:$3 answers, but not the stack's"
  else row "$1" down ""; fi
}
show kafka "$KAFKA_PID" "$KAFKA_PORT" "$KAFKA_LOG"
show postgresql "$PG_DATA/postmaster.pid" "$PG_PORT" "$PG_LOG"
show mariadb "$MARIADB_PID" "$MARIADB_PORT" "$MARIADB_LOG"
if [ -x "$PY" ] && pid_alive "$KAFKA_PID"; then "$PY" "$ROOT/stack/kafka_admin.py" describe; fi
