#!/bin/sh
# Runs one bundled function or worker of this image: `docker run <image> product-get` (compose passes the
# service's name as the command). `migrate` applies pending migrations and exits.
set -eu
app="${APP_DIR:-/app}"
name="${1:-}"

usage() {
  echo "Usage: <image> <name>, one of: migrate $(ls "$app/dist/functions" | tr '\n' ' ')" >&2
  exit 64
}

case "$name" in
  '' | *[!a-z0-9-]*) usage ;;
  migrate) exec node --enable-source-maps "$app/dist/migrate/index.mjs" ;;
esac
[ -f "$app/dist/functions/$name/index.mjs" ] || usage
# exec: node becomes PID 1 and receives SIGTERM itself, for the graceful shutdown.
exec node --enable-source-maps "$app/dist/functions/$name/index.mjs"
