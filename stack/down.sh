#!/usr/bin/env bash
# Stop what stack/up.sh started: by recorded pid or the service's own stop command.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/services.sh"
stop_kafka
stop_mariadb
stop_postgres
say "down"
