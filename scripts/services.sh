#!/usr/bin/env bash
# scripts/services.sh — the servers sluice's integration tests talk to.
#
#   scripts/services.sh [up]            ensure RabbitMQ and our ClickHouse run; write and print the env file
#   scripts/services.sh stop            stop our ClickHouse (RabbitMQ is a system service: left alone)
#   scripts/services.sh clickhouse-stop stop only ClickHouse (tests use it to simulate an outage);
#                                       its ports refuse connections at once, the process
#                                       exits within ~3 s (SIGKILL after 10 s)
#   scripts/services.sh clickhouse-kill SIGKILL our ClickHouse: a crash, at once
#   scripts/services.sh clickhouse-start start only ClickHouse, on the same ports as before
#   scripts/services.sh status          say what runs; exit 1 when our ClickHouse does not
#
# RabbitMQ: the system broker on 127.0.0.1:5672 (guest/guest); started with
# `rabbitmq-server -detached` when the port does not answer.
#
# ClickHouse: a server of our own, on loopback only, with its config, data, logs and
# pid file under $SLUICE_SERVICES_DIR/clickhouse (default: <project>/.sluice/services).
# It takes HTTP 8123 / native 9000 when they are free and another free pair otherwise,
# so a second checkout of the project gets a second server instead of a clash. The
# ports are kept in clickhouse/ports, so restarts keep the URL the tests were given.
#
# The env file ($SLUICE_SERVICES_DIR/env) holds KEY=value lines (`set -a; . env`):
#   SLUICE_TEST_CLICKHOUSE_URL, SLUICE_TEST_CLICKHOUSE_NATIVE_PORT, SLUICE_TEST_AMQP_URL
#
# Missing Debian packages (clickhouse-server, clickhouse-client, prometheus for
# promtool, rabbitmq-server) are installed with apt when running as root.
# Runs of this script on the same state directory are serialised with flock.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
STATE=${SLUICE_SERVICES_DIR:-$ROOT/.sluice/services}
CH=$STATE/clickhouse
ENV_FILE=$STATE/env
AMQP_PORT=5672
AMQP_URL="amqp://guest:guest@127.0.0.1:$AMQP_PORT"
WAIT_SECONDS=${SLUICE_SERVICES_WAIT:-60}

HTTP_PORT=
NATIVE_PORT=

log() { printf 'services.sh: %s\n' "$*" >&2; }
die() {
  printf 'services.sh: error: %s\n' "$*" >&2
  exit 1
}

# --- small helpers -----------------------------------------------------------

# True when something accepts TCP connections on 127.0.0.1:$1.
port_open() {
  timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null
}

# GET http://127.0.0.1:$1$2 and print the body (no curl needed).
http_get() {
  timeout 5 bash -c '
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" "$2" >&3
    cat <&3' _ "$1" "$2" 2>/dev/null | sed '1,/^\r\{0,1\}$/d'
}

# True when process $1 exists and is not a zombie.
pid_alive() {
  local stat
  [[ $1 =~ ^[0-9]+$ ]] || return 1
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat%% *} != Z ]]
}

# Sets CMDLINE to the command line of process $1, arguments joined by spaces
# (builtins only: it runs for every process in a /proc scan).
CMDLINE=
read_cmdline() {
  local -a args=()
  CMDLINE=
  { mapfile -d '' args <"/proc/$1/cmdline"; } 2>/dev/null || return 1
  CMDLINE="${args[*]}"
}

xml_escape() {
  local s=$1
  s=${s//&/&amp;}
  s=${s//</&lt;}
  s=${s//>/&gt;}
  printf '%s' "$s"
}

is_root() { [[ $(id -u) -eq 0 ]]; }

pkg_installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# Wait while another apt/dpkg runs (e.g. an install started in the background).
wait_for_apt() {
  local waited=0
  command -v pgrep >/dev/null || return 0
  while pgrep -x apt-get >/dev/null || pgrep -x apt >/dev/null || pgrep -x dpkg >/dev/null; do
    ((waited % 30 == 0)) && log "waiting for another apt-get/dpkg to finish…"
    sleep 2
    waited=$((waited + 2))
    ((waited < 1800)) || die "apt-get/dpkg still running after 30 minutes"
  done
}

# --- Debian packages ------------------------------------------------------------

ensure_packages() {
  local missing=() p
  command -v clickhouse-server >/dev/null || missing+=(clickhouse-server)
  command -v clickhouse-client >/dev/null || pkg_installed clickhouse-client || missing+=(clickhouse-client)
  command -v promtool >/dev/null || missing+=(prometheus)
  if [[ ${1:-} != clickhouse-only ]] && ! port_open "$AMQP_PORT" && ! command -v rabbitmq-server >/dev/null; then
    missing+=(rabbitmq-server)
  fi
  ((${#missing[@]} == 0)) && return 0

  if ! is_root; then
    for p in "${missing[@]}"; do
      case $p in
        prometheus) log "warning: promtool is missing (apt-get install prometheus); tests that need it will fail" ;;
        *) die "$p is not installed and we are not root: run 'sudo apt-get install -y ${missing[*]}'" ;;
      esac
    done
    return 0
  fi

  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  wait_for_apt
  apt-get -o DPkg::Lock::Timeout=600 update -q >&2 || die "apt-get update failed"
  wait_for_apt
  apt-get -o DPkg::Lock::Timeout=600 install -y -q "${missing[@]}" >&2 ||
    die "apt-get install ${missing[*]} failed"
}

# --- RabbitMQ ---------------------------------------------------------------------

ensure_rabbitmq() {
  if port_open "$AMQP_PORT"; then
    log "RabbitMQ answers on 127.0.0.1:$AMQP_PORT"
    return 0
  fi
  command -v rabbitmq-server >/dev/null || die "RabbitMQ is not running and rabbitmq-server is not installed"
  log "starting RabbitMQ (rabbitmq-server -detached)"
  # fd 9 is our lock: the broker must not inherit it.
  rabbitmq-server -detached </dev/null >>"$STATE/rabbitmq-start.log" 2>&1 9>&- ||
    log "rabbitmq-server -detached exited with $? (see $STATE/rabbitmq-start.log); waiting for the port anyway"
  local i
  for ((i = 0; i < WAIT_SECONDS * 2; i++)); do
    port_open "$AMQP_PORT" && {
      log "RabbitMQ answers on 127.0.0.1:$AMQP_PORT"
      return 0
    }
    sleep 0.5
  done
  tail -n 20 "$STATE/rabbitmq-start.log" >&2 2>/dev/null || true
  die "RabbitMQ did not open 127.0.0.1:$AMQP_PORT within ${WAIT_SECONDS}s"
}

# --- ClickHouse ---------------------------------------------------------------------

load_ports() {
  HTTP_PORT= NATIVE_PORT=
  [[ -f $CH/ports ]] || return 1
  # shellcheck disable=SC1091
  . "$CH/ports"
  [[ $HTTP_PORT =~ ^[0-9]+$ && $NATIVE_PORT =~ ^[0-9]+$ ]]
}

save_ports() {
  printf 'HTTP_PORT=%s\nNATIVE_PORT=%s\n' "$HTTP_PORT" "$NATIVE_PORT" >"$CH/ports.tmp"
  mv -f "$CH/ports.tmp" "$CH/ports"
}

instance_id() {
  if [[ ! -s $CH/instance-id ]]; then
    od -An -tx1 -N8 /dev/urandom | tr -d ' \n' >"$CH/instance-id"
  fi
  cat "$CH/instance-id"
}

# The pid of our server: from the pid file, checked against its command line.
ch_pid() {
  local pid
  pid=$(cat "$CH/pid" 2>/dev/null) || return 1
  pid=${pid//[^0-9]/}
  pid_alive "$pid" || return 1
  read_cmdline "$pid" && [[ $CMDLINE == *" --config-file=$CH/config.xml"* ]] || return 1
  printf '%s\n' "$pid"
}

# Server processes started on our config, whatever the pid file says.
# (A scan of /proc: procps' pgrep is not in every minimal image.)
ch_pids_by_cmdline() {
  local dir pid
  for dir in /proc/[0-9]*; do
    pid=${dir#/proc/}
    read_cmdline "$pid" && [[ $CMDLINE == *" --config-file=$CH/config.xml"* ]] && printf '%s\n' "$pid"
  done
  return 0
}

# True when the server on $HTTP_PORT is ours (answers with our instance id).
ch_answers() {
  [[ -n $HTTP_PORT ]] || return 1
  [[ $(http_get "$HTTP_PORT" /ping) == "Ok." ]] || return 1
  # (18.16 has no getMacro(); system.macros it has)
  [[ $(http_get "$HTTP_PORT" "/?query=SELECT%20substitution%20FROM%20system.macros%20WHERE%20macro%3D'sluice_instance'") == "$(instance_id)" ]]
}

ch_running() { ch_pid >/dev/null && ch_answers; }

# Writes config.xml.new and users.xml.new for $HTTP_PORT/$NATIVE_PORT.
render_clickhouse_config() {
  local dir id
  dir=$(xml_escape "$CH")
  id=$(instance_id)
  mkdir -p "$CH"/{data,tmp,user_files,format_schemas,log}
  cat >"$CH/config.xml.new" <<EOF
<?xml version="1.0"?>
<!-- Written by scripts/services.sh: changes here are overwritten on the next start. -->
<yandex>
    <logger>
        <level>information</level>
        <log>$dir/log/clickhouse-server.log</log>
        <errorlog>$dir/log/clickhouse-server.err.log</errorlog>
        <size>50M</size>
        <count>2</count>
        <console>0</console>
    </logger>

    <listen_host>127.0.0.1</listen_host>
    <http_port>$HTTP_PORT</http_port>
    <tcp_port>$NATIVE_PORT</tcp_port>

    <path>$dir/data/</path>
    <tmp_path>$dir/tmp/</tmp_path>
    <user_files_path>$dir/user_files/</user_files_path>
    <format_schema_path>$dir/format_schemas/</format_schema_path>
    <users_config>users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>

    <max_connections>1024</max_connections>
    <!-- A graceful stop waits for idle keep-alive connections to time out, so keep it
         short; but above @clickhouse/client's idle socket TTL (2.5 s), or clients reuse
         sockets the server is closing. -->
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>100</max_concurrent_queries>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <mark_cache_size>268435456</mark_cache_size>
    <mlock_executable>false</mlock_executable>
    <shutdown_wait_unfinished>2</shutdown_wait_unfinished>

    <query_log>
        <database>system</database>
        <table>query_log</table>
        <partition_by>toYYYYMM(event_date)</partition_by>
        <flush_interval_milliseconds>1000</flush_interval_milliseconds>
    </query_log>

    <!-- Lets services.sh tell our server from another one on the same port. -->
    <macros>
        <sluice_instance>$id</sluice_instance>
    </macros>
</yandex>
EOF
  cat >"$CH/users.xml.new" <<'EOF'
<?xml version="1.0"?>
<!-- Written by scripts/services.sh: changes here are overwritten on the next start. -->
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
            <use_uncompressed_cache>0</use_uncompressed_cache>
            <load_balancing>random</load_balancing>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks>
                <ip>127.0.0.1</ip>
                <ip>::1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
EOF
}

write_clickhouse_config() {
  render_clickhouse_config
  mv -f "$CH/config.xml.new" "$CH/config.xml"
  mv -f "$CH/users.xml.new" "$CH/users.xml"
}

# True when this script would now write another config than the running server's.
clickhouse_config_changed() {
  local changed=1
  render_clickhouse_config
  if cmp -s "$CH/config.xml.new" "$CH/config.xml" && cmp -s "$CH/users.xml.new" "$CH/users.xml"; then
    changed=0
  fi
  rm -f "$CH/config.xml.new" "$CH/users.xml.new"
  ((changed == 1))
}

# Start the server on $HTTP_PORT/$NATIVE_PORT and wait for it.
# Returns 0 when it answers, 2 when a port was taken, 1 on any other failure.
ch_launch() {
  local bin errlog offset pid i
  bin=$(command -v clickhouse-server) || die "clickhouse-server is not installed"
  write_clickhouse_config
  errlog=$CH/log/clickhouse-server.err.log
  offset=$(($(stat -c %s "$errlog" 2>/dev/null || echo 0) + 1))
  rm -f "$CH/pid"
  log "starting ClickHouse on 127.0.0.1 (http $HTTP_PORT, native $NATIVE_PORT), state in $CH"
  # Not --daemon: we keep the pid ($!; 18.16 writes --pid-file only as a daemon),
  # and the server keeps no stdio of our caller.
  # setsid: its own session, so signals aimed at a test's process group miss it.
  # fd 9 is our lock: the server must not inherit it.
  (cd "$CH" && exec setsid "$bin" --config-file="$CH/config.xml" \
    </dev/null >>"$CH/log/stdout.log" 2>&1 9>&-) &
  pid=$!
  printf '%s\n' "$pid" >"$CH/pid"
  for ((i = 0; i < WAIT_SECONDS * 10; i++)); do
    if ! pid_alive "$pid" && ! ch_pid >/dev/null; then
      wait "$pid" 2>/dev/null || true
      if tail -c +"$offset" "$errlog" 2>/dev/null | grep -q 'Address already in use'; then
        log "port $HTTP_PORT or $NATIVE_PORT is taken"
        return 2
      fi
      log "ClickHouse exited during start; last lines of $errlog and $CH/log/stdout.log:"
      tail -c +"$offset" "$errlog" 2>/dev/null | tail -n 20 >&2 || true
      tail -n 20 "$CH/log/stdout.log" >&2 2>/dev/null || true
      return 1
    fi
    if ch_answers && ch_pid >/dev/null; then
      log "ClickHouse is up (pid $(ch_pid), $(http_get "$HTTP_PORT" "/?query=SELECT%20version()"))"
      return 0
    fi
    sleep 0.1
  done
  log "ClickHouse did not answer on port $HTTP_PORT within ${WAIT_SECONDS}s; last lines of $errlog:"
  tail -c +"$offset" "$errlog" 2>/dev/null | tail -n 20 >&2 || true
  ch_stop
  return 1
}

# Candidate (http native) port pairs: the defaults, then pairs from an offset
# derived from the state directory, so two checkouts try different pairs first.
port_candidates() {
  local base i off
  echo "8123 9000"
  base=$(($(printf '%s' "$STATE" | cksum | cut -d' ' -f1) % 200))
  for ((i = 0; i < 200; i++)); do
    off=$(((base + i) % 200))
    echo "$((18123 + off)) $((19123 + off))"
  done
}

ch_start() { # [strict]: only the recorded ports
  local strict=${1:-} pair rc tried=0
  mkdir -p "$CH"
  load_ports || true
  if ch_running; then
    if ! clickhouse_config_changed; then
      log "ClickHouse already running (pid $(ch_pid), http $HTTP_PORT, native $NATIVE_PORT)"
      return 0
    fi
    log "the ClickHouse config this script writes has changed: restarting the server on the same ports"
    ch_stop
  fi
  if ch_pid >/dev/null && [[ -n $HTTP_PORT ]]; then
    # Ours but not answering: perhaps still starting after an unclean stop.
    local i
    for ((i = 0; i < WAIT_SECONDS * 10; i++)); do
      ch_running && {
        log "ClickHouse is up (pid $(ch_pid))"
        return 0
      }
      ch_pid >/dev/null || break
      sleep 0.1
    done
    log "ClickHouse (pid $(ch_pid 2>/dev/null || echo '?')) does not answer; restarting it"
    ch_stop
  fi
  ch_stop_strays

  if load_ports; then
    if ! port_open "$HTTP_PORT" && ! port_open "$NATIVE_PORT"; then
      rc=0
      ch_launch || rc=$?
      ((rc == 0)) && return 0
      ((rc == 2)) || die "ClickHouse did not start (logs in $CH/log)"
    else
      log "recorded ports $HTTP_PORT/$NATIVE_PORT are taken by another process"
    fi
    [[ $strict == strict ]] &&
      die "cannot restart ClickHouse on its ports $HTTP_PORT/$NATIVE_PORT: taken by another process (run 'scripts/services.sh' to pick new ports)"
  fi

  while read -r HTTP_PORT NATIVE_PORT; do
    port_open "$HTTP_PORT" && continue
    port_open "$NATIVE_PORT" && continue
    rc=0
    ch_launch || rc=$?
    if ((rc == 0)); then
      save_ports
      return 0
    fi
    ((rc == 2)) || die "ClickHouse did not start (logs in $CH/log)"
    tried=$((tried + 1))
    ((tried < 10)) || break
  done < <(port_candidates)
  die "found no free port pair for ClickHouse"
}

# Stop server processes on our config that the pid file does not know about.
ch_stop_strays() {
  local pid known
  known=$(ch_pid 2>/dev/null || true)
  for pid in $(ch_pids_by_cmdline); do
    [[ $pid == "$known" || $pid == "$$" ]] && continue
    pid_alive "$pid" || continue
    read_cmdline "$pid" && [[ $CMDLINE == *clickhouse*" --config-file=$CH/config.xml"* ]] || continue
    log "stopping stray ClickHouse pid $pid"
    ch_kill_pid "$pid"
  done
}

# Stop process $1: SIGTERM, and SIGKILL when it is still there after $2 seconds
# (default 10; 0 = SIGKILL at once). On SIGTERM the server closes its listening
# sockets at once, then waits for running queries (shutdown_wait_unfinished) and
# for idle keep-alive connections (keep_alive_timeout) before it exits.
ch_kill_pid() {
  local pid=$1 grace=${2:-10} i
  if ((grace > 0)); then
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < grace * 10; i++)); do
      pid_alive "$pid" || return 0
      sleep 0.1
    done
    log "ClickHouse pid $pid still runs ${grace}s after SIGTERM; sending SIGKILL"
  fi
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    pid_alive "$pid" || return 0
    sleep 0.1
  done
  die "ClickHouse pid $pid survived SIGKILL"
}

ch_stop() { # [grace seconds]
  local pid
  if pid=$(ch_pid); then
    if [[ ${1:-} == 0 ]]; then log "killing ClickHouse (pid $pid, SIGKILL)"; else log "stopping ClickHouse (pid $pid)"; fi
    ch_kill_pid "$pid" "${1:-10}"
  else
    log "ClickHouse is not running"
  fi
  ch_stop_strays
  rm -f "$CH/pid"
}

# --- env file ------------------------------------------------------------------------

write_env() {
  load_ports || die "no ClickHouse ports recorded in $CH/ports"
  {
    printf 'SLUICE_TEST_CLICKHOUSE_URL=http://127.0.0.1:%s\n' "$HTTP_PORT"
    printf 'SLUICE_TEST_CLICKHOUSE_NATIVE_PORT=%s\n' "$NATIVE_PORT"
    printf 'SLUICE_TEST_AMQP_URL=%s\n' "$AMQP_URL"
  } >"$ENV_FILE.tmp"
  mv -f "$ENV_FILE.tmp" "$ENV_FILE"
  cat "$ENV_FILE"
}

# --- main ------------------------------------------------------------------------------

cmd=${1:-up}
case $cmd in
  up | start | stop | clickhouse-stop | clickhouse-kill | clickhouse-start | status) ;;
  -h | --help | help)
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
    exit 0
    ;;
  *) die "unknown command '$cmd' (use: up, stop, clickhouse-stop, clickhouse-kill, clickhouse-start, status)" ;;
esac

mkdir -p "$CH"
exec 9>"$STATE/lock"
flock -w 600 9 || die "another services.sh holds $STATE/lock for more than 10 minutes"

case $cmd in
  up | start)
    ensure_packages
    ensure_rabbitmq
    ch_start
    write_env
    ;;
  clickhouse-start)
    ensure_packages clickhouse-only
    ch_start strict
    write_env
    ;;
  stop | clickhouse-stop)
    ch_stop
    ;;
  clickhouse-kill)
    ch_stop 0
    ;;
  status)
    load_ports || true
    port_open "$AMQP_PORT" && log "RabbitMQ: up on 127.0.0.1:$AMQP_PORT" || log "RabbitMQ: down"
    if ch_running; then
      log "ClickHouse: up (pid $(ch_pid), http $HTTP_PORT, native $NATIVE_PORT)"
      [[ -f $ENV_FILE ]] && cat "$ENV_FILE"
    else
      log "ClickHouse: down"
      exit 1
    fi
    ;;
esac
