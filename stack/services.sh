# Start and stop functions of the local stack's services (sourced after lib.sh).
# Each start is idempotent; each stop stops only what the stack started.

# ---------------------------------------------------------------- PostgreSQL
start_postgres() {
  if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    say "installing PostgreSQL from Debian packages"
    apt_install postgresql
  fi
  PG_VERSION=$(ls /usr/lib/postgresql | sort -n | tail -n 1)
  if ! pg_lsclusters -h | awk -v v="$PG_VERSION" '$1==v && $2=="main"' | grep -q .; then
    pg_createcluster "$PG_VERSION" main >/dev/null
  fi
  local port status
  port=$(pg_lsclusters -h | awk -v v="$PG_VERSION" '$1==v && $2=="main" {print $3}')
  status=$(pg_lsclusters -h | awk -v v="$PG_VERSION" '$1==v && $2=="main" {print $4}')
  [ "$port" = 5432 ] || die "PostgreSQL cluster $PG_VERSION/main is on port $port, expected 5432"
  if [ "$status" != online ]; then
    say "starting PostgreSQL $PG_VERSION"
    pg_ctlcluster "$PG_VERSION" main start
    echo "$PG_VERSION" >"$PG_MARK"
  fi
  wait_for 30 "/var/log/postgresql/postgresql-$PG_VERSION-main.log" PostgreSQL \
    su postgres -c "psql -qtAc 'select 1'"
  su postgres -c "psql -v ON_ERROR_STOP=1 -qtA" <<'SQL' >/dev/null
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

# ---------------------------------------------------------------- MariaDB
mariadb_ping() { mariadb-admin -uroot --connect-timeout=2 ping; }

start_mariadb() {
  if [ ! -x /usr/sbin/mariadbd ]; then
    say "installing MariaDB from Debian packages"
    apt_install mariadb-server
  fi
  if ! mariadb_ping >/dev/null 2>&1; then
    [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql >"$MARIADB_LOG" 2>&1
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld "$MARIADB_STATE"
    say "starting MariaDB"
    start-stop-daemon --start --oknodo --background --make-pidfile --pidfile "$MARIADB_PID" \
      --exec /usr/sbin/mariadbd -- --user=mysql --bind-address=127.0.0.1 --port=3306 \
      --log-error="$MARIADB_LOG"
    wait_for 60 "$MARIADB_LOG" MariaDB mariadb_ping
  fi
  mariadb -uroot <<'SQL'
CREATE DATABASE IF NOT EXISTS wado CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
CREATE USER IF NOT EXISTS 'wado'@'127.0.0.1' IDENTIFIED BY 'wado';
CREATE USER IF NOT EXISTS 'wado'@'localhost' IDENTIFIED BY 'wado';
-- Tests create a database each, so the stand-in user may create databases.
GRANT ALL PRIVILEGES ON *.* TO 'wado'@'127.0.0.1';
GRANT ALL PRIVILEGES ON *.* TO 'wado'@'localhost';
SQL
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
  ensure_java
  kafka_jars
  local data="$KAFKA_STATE/data" props="$KAFKA_STATE/server.properties"
  sed "s#@DATA_DIR@#$data#" "$KAFKA_DIR/server.properties.in" >"$props"
  local java=(java -Xms256m -Xmx512m -XX:+UseG1GC -Djava.awt.headless=true
    "-Dlog4j2.configurationFile=$KAFKA_DIR/log4j2.yaml" -cp "$KAFKA_DIR/lib/*")
  if [ ! -f "$data/meta.properties" ]; then
    say "formatting Kafka storage in $data"
    "${java[@]}" kafka.tools.StorageTool format --config "$props" \
      --cluster-id "$("${java[@]}" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)" \
      >>"$KAFKA_LOG" 2>&1 || die "Kafka storage format failed; see $KAFKA_LOG"
  fi
  if ! pid_alive "$KAFKA_PID"; then
    port_open 9092 && die "port 9092 is taken by a process this stack did not start"
    say "starting Kafka"
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

stop_kafka() { stop_pid "$KAFKA_PID" Kafka; }

stop_mariadb() {
if pid_alive "$MARIADB_PID"; then
  say "stopping MariaDB"
  mariadb-admin -uroot shutdown || kill "$(cat "$MARIADB_PID")"
  stop_pid "$MARIADB_PID" MariaDB nokill
fi
rm -f "$MARIADB_PID"
}

stop_postgres() {
if [ -f "$PG_MARK" ]; then
  say "stopping PostgreSQL $(cat "$PG_MARK")"
  pg_ctlcluster "$(cat "$PG_MARK")" main stop || true
  rm -f "$PG_MARK"
fi
}
