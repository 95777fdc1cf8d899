# Shared settings and helpers for the local stack scripts (sourced, not run).
# Everything listens on 127.0.0.1; state lives in .stack/ (git-ignored).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${WADO_STACK_STATE:-$ROOT/.stack}"  # tests point it elsewhere to try the scripts
KAFKA_DIR="$ROOT/stack/kafka"
KAFKA_STATE="$STATE/kafka"
KAFKA_PID="$KAFKA_STATE/kafka.pid"
KAFKA_LOG="$KAFKA_STATE/kafka.log"
MARIADB_STATE="$STATE/mariadb"
MARIADB_PID="$MARIADB_STATE/mariadb.pid"
MARIADB_LOG="$MARIADB_STATE/mariadb.log"
MARIADB_DATA="$MARIADB_STATE/data"
MARIADB_SOCKET="$MARIADB_STATE/mariadb.sock"
PG_VERSION="${WADO_PG_VERSION:-15}"
PG_STATE="$STATE/postgres"
PG_DATA="$PG_STATE/data"
PG_RUN="$PG_STATE/run"   # its Unix socket directory
PG_LOG="$PG_STATE/postgres.log"
PY="$ROOT/.venv/bin/python"
# The stack's own instances listen on ports of their own, so a PostgreSQL, MariaDB or
# Kafka already on the usual ports neither breaks the stack nor is touched by it. The
# pipeline's defaults (wado_pipeline/settings.py, the Makefile) name these ports.
KAFKA_PORT="${WADO_STACK_KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${WADO_STACK_KAFKA_CONTROLLER_PORT:-19093}"
PG_PORT="${WADO_STACK_POSTGRES_PORT:-15432}"
MARIADB_PORT="${WADO_STACK_MARIADB_PORT:-13306}"

say() { printf '[stack] %s\n' "$*"; }
die() { printf '[stack] ERROR: %s\n' "$*" >&2; exit 1; }

pid_alive() { [ -f "$1" ] && kill -0 "$(head -n 1 "$1")" 2>/dev/null; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Superuser clients of the stack's own servers (over their sockets, no password).
pg_superuser() { su postgres -c "psql -h '$PG_RUN' -p $PG_PORT $*"; }
mariadb_root() { mariadb --no-defaults -uroot --socket="$MARIADB_SOCKET" "$@"; }

# wait_for SECONDS LOGFILE DESCRIPTION COMMAND...: poll COMMAND until it succeeds.
wait_for() {
  local limit=$1 log=$2 what=$3; shift 3
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      die "$what did not come up within ${limit}s; see $log"
    fi
    sleep 0.5
  done
}

apt_install() {
  if [ ! -f "$STATE/apt-updated" ]; then
    apt-get update -qq && mkdir -p "$STATE" && touch "$STATE/apt-updated"
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >"$STATE/apt-install.log" 2>&1 \
    || die "apt-get install $* failed; see $STATE/apt-install.log"
}

# ---------------------------------------------------------------- prerequisites
# What a plain Debian 12 (or Ubuntu 22.04+) machine lacks, installed only when missing.

java_major() {
  java -version 2>&1 | awk -F'"' '/version/ {split($2, v, "."); print (v[1] == "1" ? v[2] : v[1]); exit}'
}

ensure_java() {  # a Java runtime for Kafka: headless, 17 or newer
  if ! command -v java >/dev/null 2>&1 || [ "$(java_major)" -lt 17 ]; then
    say "installing a Java runtime (openjdk-17-jre-headless) from Debian packages"
    apt_install openjdk-17-jre-headless
  fi
}

ensure_maven() {  # Maven resolves Kafka's jars from Maven Central
  if ! command -v mvn >/dev/null 2>&1; then
    say "installing Maven from Debian packages"
    apt_install maven
  fi
}

# The upstream programs the side-by-side tests run beside the pipeline (absent from a
# user's own clone: then nothing is installed and those tests say why they skip).
upstream_dir() {  # WADO_UPSTREAM_DIR, else shared/upstream beside the project or a parent
  local dir="$ROOT"
  if [ -n "${WADO_UPSTREAM_DIR:-}" ]; then echo "$WADO_UPSTREAM_DIR"; return; fi
  while [ "$dir" != / ]; do
    dir=$(dirname "$dir")
    if [ -d "$dir/shared/upstream/bin" ]; then echo "$dir/shared/upstream"; return; fi
  done
  # this workplace's shared folder, for a clone made somewhere else (CI's)
  if [ -d /work/shared/upstream/bin ]; then echo /work/shared/upstream; return; fi
  echo "$ROOT/../shared/upstream"
}
UPSTREAM_DIR="$(upstream_dir)"

ensure_dcmtk() {  # dcmtk's storescu sends real DICOM files to upstream's receiver
  if [ -x "$UPSTREAM_DIR/bin/wado-storescp" ] && ! command -v storescu >/dev/null 2>&1; then
    say "installing dcmtk (storescu, for the upstream side-by-side tests) from Debian packages"
    apt_install dcmtk
  fi
}

ensure_python_venv() {  # $1: the interpreter the venv is made with
  local python=$1 version
  if ! command -v "$python" >/dev/null 2>&1; then
    say "installing $python and its venv module from Debian packages"
    apt_install "$python" "$python-venv"
  fi
  if ! "$python" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    say "installing python$version-venv (the venv module) from Debian packages"
    apt_install "python$version-venv"
  fi
}
