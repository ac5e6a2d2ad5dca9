# syntax=docker/dockerfile:1
# One image for every function and worker: each is a self-contained bundle under dist/ (npm run build),
# so the runtime stage has no node_modules. Pick one with the command: `docker run <image> product-get`.

FROM node:20-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
# npm ci installs every workspace of package.json, so their manifests come before it.
COPY clients/typescript/package.json clients/typescript/
RUN npm ci --no-audit --no-fund
COPY . .
RUN npm run build

# CI/CD images, one per function or worker: `docker build --target function --build-arg FUNCTION=<name>`.
# Each holds its own bundle only, so a function is built, pushed, rolled out and rolled back on its own.
FROM node:20-slim AS function
ARG FUNCTION
ENV NODE_ENV=production \
    PORT=8080
WORKDIR /app
COPY --from=build /src/dist/functions/${FUNCTION} ./dist/functions/${FUNCTION}
COPY infra/docker/healthcheck.mjs ./healthcheck.mjs
COPY --chmod=0755 infra/docker/entrypoint.sh /usr/local/bin/function-entrypoint
USER node
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/function-entrypoint"]

# The migration runner alone (`--target migrate`): the Job CD runs before rolling the functions.
FROM node:20-slim AS migrate
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /src/dist/migrate ./dist/migrate
COPY --chmod=0755 infra/docker/entrypoint.sh /usr/local/bin/function-entrypoint
USER node
ENTRYPOINT ["/usr/local/bin/function-entrypoint"]
CMD ["migrate"]

# Backups (`--target backup`): db-backup and db-restore with the MariaDB client tools of the server's own
# version (mariadb-dump, mariadb-binlog), and Node from its official image.
FROM build AS backup-build
RUN npx esbuild scripts/db-backup.ts scripts/db-restore.ts --bundle --platform=node --target=node20 \
      --format=esm --outdir=dist/backup --out-extension:.js=.mjs

FROM mariadb:11.4 AS backup
COPY --from=node:20-slim /usr/local/bin/node /usr/local/bin/node
WORKDIR /app
COPY --from=backup-build /src/dist/backup ./
RUN install -d -o mysql -g mysql /backups
USER mysql
ENTRYPOINT ["node", "/app/db-backup.mjs"]

FROM node:20-slim AS runtime
ENV NODE_ENV=production \
    PORT=8080
WORKDIR /app
COPY --from=build /src/dist ./dist
COPY infra/docker/healthcheck.mjs ./healthcheck.mjs
COPY --chmod=0755 infra/docker/entrypoint.sh /usr/local/bin/function-entrypoint
USER node
EXPOSE 8080
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=5 CMD ["node", "/app/healthcheck.mjs"]
ENTRYPOINT ["/usr/local/bin/function-entrypoint"]
