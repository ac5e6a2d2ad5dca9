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
