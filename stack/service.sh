#!/usr/bin/env bash
# Start or stop one service of the local stack: stack/service.sh kafka|postgres|mariadb start|stop
# (used by the fault-injection tests).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/services.sh"
mkdir -p "$STATE" "$KAFKA_STATE" "$MARIADB_STATE"
case "${1:-}:${2:-}" in
  kafka:start|postgres:start|mariadb:start|kafka:stop|postgres:stop|mariadb:stop) "${2}_${1}" ;;
  *) die "usage: stack/service.sh kafka|postgres|mariadb start|stop" ;;
esac
