# Start and stop functions of the local stack's services (sourced after lib.sh).
# The stack runs instances of its own (data under .stack/, ports of its own, lib.sh) and
# never uses or stops a server of the machine's. Each start is idempotent; each stop stops
# only what the stack started, and fails when the service's port still answers.

# refuse_foreign PORT NAME PIDFILE: a port answering without our process behind it is
# someone else's server, which the stack must neither use nor stop.
refuse_foreign() {
  if ! pid_alive "$3" && port_open "$1"; then
    die "port $1 answers, but not $2 of this stack; set WADO_STACK_${2^^}_PORT to a free port"
  fi
}

# stopped PORT NAME: the stop worked only if nothing answers on the port any more.
stopped() {
  if port_open "$1"; then
    die "$2 still answers on 127.0.0.1:$1 after the stop (not a server this stack started?)"
  fi
}

# ---------------------------------------------------------------- PostgreSQL
pg_bin() { echo "/usr/lib/postgresql/$PG_VERSION/bin/$1"; }

start_postgres() {
  if [ ! -x "$(pg_bin postgres)" ]; then
    say "installing PostgreSQL from Debian packages"
    apt_install postgresql
  fi
  # Installing the package may have started the machine's own cluster: leave it be.
  pid_alive "$PG_DATA/postmaster.pid" || refuse_foreign "$PG_PORT" postgres "$PG_DATA/postmaster.pid"
  mkdir -p "$PG_STATE" "$PG_RUN"
  chown postgres:postgres "$PG_STATE" "$PG_RUN"
  if [ ! -f "$PG_DATA/PG_VERSION" ]; then
    say "creating the stack's PostgreSQL $PG_VERSION data directory in $PG_DATA"
    su postgres -c "$(pg_bin initdb) -D '$PG_DATA' -U postgres --auth-local=trust \
      --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8" >"$PG_STATE/initdb.log" 2>&1 \
      || { rm -rf "$PG_DATA"; die "initdb failed; see $PG_STATE/initdb.log"; }
  fi
  if ! pid_alive "$PG_DATA/postmaster.pid"; then
    say "starting PostgreSQL $PG_VERSION on 127.0.0.1:$PG_PORT"
    su postgres -c "$(pg_bin pg_ctl) -D '$PG_DATA' -l '$PG_LOG' -w -t 60 start \
      -o \"-p $PG_PORT -k '$PG_RUN' -c listen_addresses=127.0.0.1\"" >/dev/null \
      || die "PostgreSQL did not start; see $PG_LOG"
  fi
  wait_for 30 "$PG_LOG" PostgreSQL pg_superuser -qtAc "'select 1'"
  pg_superuser -v ON_ERROR_STOP=1 -qtA <<'SQL' >/dev/null
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'wado') THEN
    CREATE ROLE wado LOGIN PASSWORD 'wado';
  END IF;
  -- tests give each Dagster daemon its own storage database
  ALTER ROLE wado CREATEDB;
END $$;
SELECT 'CREATE DATABASE wado OWNER wado' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'wado')\gexec
SELECT 'CREATE DATABASE wado_dagster OWNER wado' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'wado_dagster')\gexec
SQL
}

stop_postgres() {
  if pid_alive "$PG_DATA/postmaster.pid"; then
    say "stopping PostgreSQL"
    su postgres -c "$(pg_bin pg_ctl) -D '$PG_DATA' -m fast -w -t 60 stop" >/dev/null \
      || die "PostgreSQL did not stop; see $PG_LOG"
  fi
  stopped "$PG_PORT" PostgreSQL
}

# ---------------------------------------------------------------- MariaDB
mariadb_ping() { mariadb-admin --no-defaults -uroot --socket="$MARIADB_SOCKET" --connect-timeout=2 ping; }

start_mariadb() {
  if [ ! -x /usr/sbin/mariadbd ]; then
    say "installing MariaDB from Debian packages"
    apt_install mariadb-server
  fi
  pid_alive "$MARIADB_PID" || refuse_foreign "$MARIADB_PORT" mariadb "$MARIADB_PID"
  mkdir -p "$MARIADB_STATE"
  chown mysql:mysql "$MARIADB_STATE"
  if [ ! -d "$MARIADB_DATA/mysql" ]; then
    say "creating the stack's MariaDB data directory in $MARIADB_DATA"
    mariadb-install-db --no-defaults --user=mysql --datadir="$MARIADB_DATA" \
      --auth-root-authentication-method=socket >"$MARIADB_STATE/install-db.log" 2>&1 \
      || { rm -rf "$MARIADB_DATA"; die "mariadb-install-db failed; see $MARIADB_STATE/install-db.log"; }
  fi
  if ! pid_alive "$MARIADB_PID"; then
    say "starting MariaDB on 127.0.0.1:$MARIADB_PORT"
    start-stop-daemon --start --background --make-pidfile --pidfile "$MARIADB_PID" \
      --exec /usr/sbin/mariadbd -- --no-defaults --user=mysql --datadir="$MARIADB_DATA" \
      --socket="$MARIADB_SOCKET" --pid-file="$MARIADB_STATE/mariadbd.pid" \
      --bind-address=127.0.0.1 --port="$MARIADB_PORT" --log-error="$MARIADB_LOG" \
      --character-set-server=utf8mb4 --collation-server=utf8mb4_bin
  fi
  wait_for 60 "$MARIADB_LOG" MariaDB mariadb_ping
  mariadb_root <<'SQL'
-- No anonymous users: ''@'localhost' would shadow every 'user'@'%' the tests create.
DELETE FROM mysql.global_priv WHERE User = '';
FLUSH PRIVILEGES;
CREATE DATABASE IF NOT EXISTS wado CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
CREATE USER IF NOT EXISTS 'wado'@'127.0.0.1' IDENTIFIED BY 'wado';
CREATE USER IF NOT EXISTS 'wado'@'localhost' IDENTIFIED BY 'wado';
-- Tests create a database each, so the stand-in user may create databases.
GRANT ALL PRIVILEGES ON *.* TO 'wado'@'127.0.0.1';
GRANT ALL PRIVILEGES ON *.* TO 'wado'@'localhost';
SQL
}

stop_mariadb() {
  if pid_alive "$MARIADB_PID"; then
    say "stopping MariaDB"
    mariadb-admin --no-defaults -uroot --socket="$MARIADB_SOCKET" shutdown \
      || kill "$(cat "$MARIADB_PID")"
    stop_pid "$MARIADB_PID" MariaDB nokill
  fi
  rm -f "$MARIADB_PID"
  stopped "$MARIADB_PORT" MariaDB
}

# ---------------------------------------------------------------- Kafka
kafka_jars() {
  local want have=""
  want=$(sha256sum "$KAFKA_DIR/pom.xml" | cut -d' ' -f1)
  [ -f "$KAFKA_DIR/lib/.pom.sha256" ] && have=$(cat "$KAFKA_DIR/lib/.pom.sha256")
  if [ "$want" != "$have" ]; then
    ensure_maven
    say "resolving Kafka jars from Maven Central"
    rm -rf "$KAFKA_DIR/lib"
    (cd "$KAFKA_DIR" && mvn -q -B dependency:copy-dependencies -DoutputDirectory=lib \
      -DincludeScope=runtime >"$KAFKA_STATE/maven.log" 2>&1) \
      || die "Maven could not resolve Kafka; see $KAFKA_STATE/maven.log"
    echo "$want" >"$KAFKA_DIR/lib/.pom.sha256"
  fi
}

start_kafka() {
  if ! pid_alive "$KAFKA_PID"; then
    refuse_foreign "$KAFKA_PORT" kafka "$KAFKA_PID"
    refuse_foreign "$KAFKA_CONTROLLER_PORT" kafka_controller "$KAFKA_PID"
  fi
  ensure_java
  kafka_jars
  local data="$KAFKA_STATE/data" props="$KAFKA_STATE/server.properties"
  sed -e "s#@DATA_DIR@#$data#" -e "s#@PORT@#$KAFKA_PORT#g" \
    -e "s#@CONTROLLER_PORT@#$KAFKA_CONTROLLER_PORT#g" \
    "$KAFKA_DIR/server.properties.in" >"$props"
  local java=(java -Xms256m -Xmx512m -XX:+UseG1GC -Djava.awt.headless=true
    "-Dlog4j2.configurationFile=$KAFKA_DIR/log4j2.yaml" -cp "$KAFKA_DIR/lib/*")
  if [ ! -f "$data/meta.properties" ]; then
    say "formatting Kafka storage in $data"
    "${java[@]}" kafka.tools.StorageTool format --config "$props" \
      --cluster-id "$("${java[@]}" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)" \
      >>"$KAFKA_LOG" 2>&1 || die "Kafka storage format failed; see $KAFKA_LOG"
  fi
  if ! pid_alive "$KAFKA_PID"; then
    say "starting Kafka on 127.0.0.1:$KAFKA_PORT"
    nohup "${java[@]}" kafka.Kafka "$props" >>"$KAFKA_LOG" 2>&1 &
    echo $! >"$KAFKA_PID"
  fi
  wait_for 90 "$KAFKA_LOG" Kafka "$PY" "$ROOT/stack/kafka_admin.py" ready
  "$PY" "$ROOT/stack/kafka_admin.py" create-topics
}

# ---------------------------------------------------------------- stopping
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

stop_kafka() {
  stop_pid "$KAFKA_PID" Kafka
  stopped "$KAFKA_PORT" Kafka
}
