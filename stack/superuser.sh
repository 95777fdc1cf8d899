#!/usr/bin/env bash
# A superuser client of the stack's own servers, SQL on stdin (used by the tests that
# create roles): stack/superuser.sh postgres [DATABASE] | stack/superuser.sh mariadb
source "$(dirname "$0")/lib.sh"
case "${1:-}" in
  postgres) pg_superuser -v ON_ERROR_STOP=1 -q -d "${2:-wado}" ;;
  mariadb) mariadb_root ;;
  *) die "usage: stack/superuser.sh postgres [DATABASE] | mariadb" ;;
esac
