#!/usr/bin/env bash
# Starts the services the app and its tests need on a Debian machine without Docker or systemd:
# MariaDB on 3306, Redis on 6379, RabbitMQ on 5672. Idempotent: a service that already answers on its
# port is left alone; a missing one is installed with apt-get and started in the background.
# With Docker, `docker compose up -d mysql-primary redis rabbitmq` runs the services instead; this script
# is still what installs the `redis-server` binary, which the fault tests start on ports of their own.
#
#   bash scripts/dev-services.sh
#
# DEVELOPMENT ONLY: it lets MariaDB's root log in from 127.0.0.1 with an empty password, which is what
# the defaults in shared/config.ts expect. Never run this on a machine reachable by anyone else.
set -euo pipefail

WAIT_SECONDS="${WAIT_SECONDS:-60}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "dev-services: run as root or install sudo" >&2; exit 1; }
  SUDO="sudo"
fi

say() { printf 'dev-services: %s\n' "$*"; }

answers() { # port -> 0 when something accepts TCP connections on 127.0.0.1:port
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

wait_for() { # name port
  local name="$1" port="$2" waited=0
  until answers "$port"; do
    if [ "$waited" -ge "$WAIT_SECONDS" ]; then
      say "$name did not answer on port $port within ${WAIT_SECONDS}s" >&2
      return 1
    fi
    sleep 1
    waited=$((waited + 1))
  done
  say "$name answers on port $port (after ${waited}s)"
}

APT_UPDATED=0
install_packages() { # package...
  if [ "$APT_UPDATED" -eq 0 ]; then
    say "apt-get update"
    $SUDO apt-get update -qq
    APT_UPDATED=1
  fi
  say "apt-get install $*"
  # policy-rc.d-less containers would otherwise try (and fail) to start the services via init scripts.
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

mariadb_client() {
  if command -v mariadb >/dev/null; then echo mariadb; else echo mysql; fi
}

start_mariadb() {
  if answers 3306; then
    say "MariaDB already answers on 3306: nothing to start"
  else
    [ -x /usr/sbin/mariadbd ] || install_packages mariadb-server mariadb-client
    $SUDO install -d -o mysql -g mysql -m 0755 /run/mysqld
    if [ ! -d /var/lib/mysql/mysql ]; then
      say "initialising the MariaDB data directory"
      local installer
      installer="$(command -v mariadb-install-db || command -v mysql_install_db)"
      $SUDO "$installer" --user=mysql --datadir=/var/lib/mysql >/dev/null
    fi
    say "starting MariaDB"
    $SUDO start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
    wait_for MariaDB 3306
  fi
  ensure_root_over_tcp
}

# Development only: root@127.0.0.1 and root@localhost with an empty password over TCP.
ensure_root_over_tcp() {
  local client
  client="$(mariadb_client)"
  if "$client" --protocol=tcp -h 127.0.0.1 -P 3306 -uroot -e 'SELECT 1' >/dev/null 2>&1; then
    say "MariaDB root@127.0.0.1 logs in without a password: nothing to change"
    return
  fi
  if ! $SUDO "$client" -uroot -e 'SELECT 1' >/dev/null 2>&1; then
    # Not this machine's own server (the Compose one, say): its users are its own business.
    say "MariaDB on 3306 is not a local server this script can change (Docker's?): leaving its users alone;"
    say "  give its credentials in DATABASE_URL and TEST_DATABASE_URL (README, 'Test it')"
    return
  fi
  say "letting root log in from 127.0.0.1 without a password (development only)"
  # Through the socket: Debian's root@localhost authenticates the OS root user by unix_socket.
  $SUDO "$client" -uroot <<'SQL'
CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
ALTER USER 'root'@'127.0.0.1' IDENTIFIED BY '';
GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('');
FLUSH PRIVILEGES;
SQL
  "$client" --protocol=tcp -h 127.0.0.1 -P 3306 -uroot -e 'SELECT 1' >/dev/null
}

start_redis() {
  # Needed even where a Redis already answers: the fault tests start redis-server processes of their own
  # on free ports, to flush, stop and restart them without touching the shared one.
  command -v redis-server >/dev/null || install_packages redis-server
  if answers 6379; then
    say "Redis already answers on 6379: nothing to start"
    return
  fi
  say "starting Redis (no persistence, noeviction as BullMQ requires)"
  $SUDO redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --maxmemory-policy noeviction
  wait_for Redis 6379
}

start_rabbitmq() {
  if answers 5672; then
    say "RabbitMQ already answers on 5672: nothing to start"
    return
  fi
  command -v rabbitmq-server >/dev/null || install_packages rabbitmq-server
  say "starting RabbitMQ (guest/guest, which RabbitMQ allows from localhost only)"
  # Debian's rabbitmq-server wrapper drops to the rabbitmq user by itself when started as root.
  $SUDO rabbitmq-server -detached
  wait_for RabbitMQ 5672
}

start_mariadb
start_redis
start_rabbitmq
say "ready: DATABASE_URL=mysql://root@127.0.0.1:3306/commerce REDIS_URL=redis://127.0.0.1:6379 RABBITMQ_URL=amqp://guest:guest@127.0.0.1:5672"
