import { BACKUP_KEEP_DAYS } from './k8s'

/**
 * The compose side of the daily backup, one self-contained block for docker-compose.yml (scripts/gen-infra.ts
 * places it among the services, and BACKUP_COMPOSE_VOLUME among the volumes). The Kubernetes side is the
 * db-backup CronJob of infra/k8s/base/backup.yaml.
 */
export const BACKUP_COMPOSE_SERVICE = `  # Daily backup at 03:30 UTC (scripts/db-backup.ts: mariadb-dump --single-transaction and the binlog
  # position) into the db-backups volume, keeping ${BACKUP_KEEP_DAYS} days. Restore (docs/scaling.md):
  #   docker compose run --rm --entrypoint node db-backup /app/db-restore.mjs --from /backups/<stamp> --into <name>
  db-backup:
    image: commerce-backup:latest
    build:
      context: .
      target: backup
    restart: unless-stopped
    command: [--root, /backups, --keep-days, "${BACKUP_KEEP_DAYS}", --daily-at, "03:30"]
    environment:
      # Root here, for the binlog position and point-in-time replay; see docs/scaling.md for a backup user.
      DATABASE_URL: mysql://root:\${MYSQL_ROOT_PASSWORD:-root-dev}@mysql-primary:3306/commerce
    volumes:
      - db-backups:/backups
    depends_on:
      mysql-primary:
        condition: service_healthy
`

export const BACKUP_COMPOSE_VOLUME = '  db-backups:'
