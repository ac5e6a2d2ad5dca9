import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { DEFAULT_DATABASE_POOL_SIZE, DEFAULT_DATABASE_REPLICA_POOL_SIZE } from '../shared/config'
import { ERROR_CODES, type ErrorCode } from '../shared/errors'
import { MAX_BODY_BYTES } from '../shared/http/app'
import { renderDocsHtml } from '../shared/http/docs-page'
import { buildOpenApiDocument } from '../shared/http/openapi'
import { problemType } from '../shared/http/problem'
import type { RouteDef } from '../shared/http/route'
import { byRouteSpecificity, entryNames, FUNCTIONS_DIR, functionNames } from '../shared/runtime/discover'
import { UPSTREAM_KEEPALIVE_TIMEOUT_MS } from '../shared/runtime/server'
import { type ConnectionBudget, connectionBudget, MARIADB_LIMITS } from './connection-budget'
import { BACKUP_COMPOSE_SERVICE, BACKUP_COMPOSE_VOLUME } from './infra/backup-compose'
import { renderKubernetes } from './infra/k8s'
import { PROXYSQL_IMAGE, proxySqlStart, renderProxySqlCnf } from './infra/proxysql'

/**
 * `npm run gen:infra [-- --check]`: writes the deployment files that list functions (nginx routes and
 * upstreams, Prometheus targets, one compose service per function or worker) from the functions/
 * folder, so adding a function is adding a folder and running this. infra/infra.test.ts fails while a
 * committed file differs from what this renders; `--check` does the same from the command line.
 */

const ROOT = fileURLToPath(new URL('..', import.meta.url))
/** Every function and worker container listens here (PORT), for traffic, /health and /metrics. */
export const FUNCTION_PORT = 8080
/** Docker image every function and worker runs from; the function is chosen by the container command. */
export const IMAGE = 'commerce-functions:latest'

/** Where the compose nginx finds the API reference: infra/nginx/docs, mounted read-only. */
export const DOCS_ROOT_IN_NGINX_IMAGE = '/usr/share/nginx/docs'

export type HttpEntry = { name: string; route: RouteDef }
export type InfraModel = { functions: HttpEntry[]; workers: string[] }

const isRoute = (value: unknown): value is RouteDef =>
  typeof value === 'object' && value !== null && 'method' in value && 'path' in value

/** HTTP functions (route.ts + index.ts) and workers (index.ts only), from the folder tree. */
export async function loadModel(dir: URL = FUNCTIONS_DIR): Promise<InfraModel> {
  const entries = entryNames(dir)
  const http = functionNames(dir)
  const notDeployable = http.filter((name) => !entries.includes(name))
  if (notDeployable.length > 0) {
    throw new Error(
      `functions/${notDeployable.join(', functions/')}: a route.ts without an index.ts cannot be deployed`,
    )
  }
  const functions = await Promise.all(
    http.map(async (name) => {
      const module: Record<string, unknown> = await import(
        pathToFileURL(join(dir.pathname, name, 'route.ts')).href
      )
      if (!isRoute(module.route)) throw new Error(`functions/${name}/route.ts must export \`route\``)
      return { name, route: module.route }
    }),
  )
  return { functions, workers: entries.filter((name) => !http.includes(name)) }
}

// ------------------------------------------------------------------------------- scale and budget

/**
 * Instances of each function or worker in Compose and the local cluster (the cluster's `--scale` changes
 * them for one run); every other one runs once. Scaling one function is changing its number here and
 * running `npm run gen:infra`, which refuses a topology over the connection budget.
 */
export const INSTANCES: Readonly<Record<string, number>> = {
  'order-create': 2,
  'product-get': 2,
  'coupon-issue': 2,
}

/** What every function and worker process is given (the environment of its container). */
export const POOLS = {
  poolSize: DEFAULT_DATABASE_POOL_SIZE,
  replicaPoolSize: DEFAULT_DATABASE_REPLICA_POOL_SIZE,
} as const

/** One MariaDB server of Compose or the local cluster (scripts/connection-budget.ts). */
export { MARIADB_LIMITS }

/** Instances per function and worker, with `overrides` (name → count) over INSTANCES. */
export function instancesOf(
  model: InfraModel,
  overrides: Readonly<Record<string, number>> = {},
): Map<string, number> {
  const names = [...model.functions.map((fn) => fn.name), ...model.workers]
  const wanted = { ...INSTANCES, ...overrides }
  const unknown = Object.keys(wanted).filter((name) => !names.includes(name))
  if (unknown.length > 0) throw new Error(`no function or worker named ${unknown.join(', ')} in functions/`)
  return new Map(names.map((name) => [name, wanted[name] ?? 1]))
}

/** The connection budget of every function and worker at its instance count, with POOLS each. */
export function topologyBudget(
  model: InfraModel,
  overrides: Readonly<Record<string, number>> = {},
): ConnectionBudget {
  const processes = [...instancesOf(model, overrides)].map(([name, instances]) => ({
    name,
    instances,
    ...POOLS,
  }))
  return connectionBudget(processes, MARIADB_LIMITS)
}

/** The MariaDB option file that sets max_connections to the budget (both servers read it). */
export function renderConnectionsCnf(budget: ConnectionBudget, what: string): string {
  const processes = budget.rows.reduce((sum, row) => sum + row.instances, 0)
  return [
    `# ${GENERATED(what)}`,
    `# The connection budget (scripts/connection-budget.ts): ${processes} processes with every pool full hold up to`,
    `# ${budget.primary} connections to the primary and ${budget.replica} to the replica; ${budget.limits.headroom} more are kept for migrations,`,
    '# replication, operators and exporters. A topology over the ceiling is refused, not generated.',
    '[mariadbd]',
    `max_connections = ${budget.maxConnections}`,
    '',
  ].join('\n')
}

const GENERATED = (what: string) =>
  `Generated by \`npm run gen:infra\` (scripts/gen-infra.ts) from ${what}. Do not edit by hand.`

// ---------------------------------------------------------------------------------------------- nginx

const INDENT = '    '

/** An nginx string literal in single quotes; problem bodies never contain one. */
const quoted = (text: string) => {
  if (text.includes("'")) throw new Error(`cannot quote ${text} for nginx`)
  return `'${text}'`
}

/**
 * A problem JSON body (docs/api.md) as nginx renders it, field for field what shared/http/problem.ts renders.
 * `$problem_instance` is the path when it is safe to put in a JSON string (see the map below), else "".
 */
const problemBody = (code: ErrorCode, detail: string) =>
  quoted(
    `{"type":"${problemType(code)}","title":"${ERROR_CODES[code].title}","status":${ERROR_CODES[code].status},` +
      `"code":"${code}","detail":"${detail}","instance":"$problem_instance","requestId":"$req_id"}`,
  )

const methodsFor = (method: RouteDef['method']) => (method === 'GET' ? ['GET', 'HEAD'] : [method])

/** /v1/products/:productId → ^/v1/products/[^/]+$: the function itself answers 400 for a bad id. */
export function pathRegex(path: string): string {
  const segments = path
    .split('/')
    .map((segment) => (segment.startsWith(':') ? '[^/]+' : segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
  return `^${segments.join('/')}$`
}

const isStatic = (path: string) => !path.split('/').some((segment) => segment.startsWith(':'))

/** Lines of the http{} block both configurations share: logging, limits, request ids, proxy headers. */
function httpPreamble(target: NginxRuntime): string[] {
  const kib = MAX_BODY_BYTES / 1024
  return [
    '# One JSON line per request, with the same request id the function logs.',
    'log_format json escape=json \'{"time":"$time_iso8601","requestId":"$req_id","remote":"$remote_addr",\'',
    '    \'"method":"$request_method","uri":"$request_uri","status":$status,"bytes":$body_bytes_sent,\'',
    '    \'"seconds":$request_time,"upstream":"$upstream_addr","upstreamStatus":"$upstream_status",\'',
    '    \'"upstreamSeconds":"$upstream_response_time"}\';',
    ...(target.runDir
      ? [
          `access_log ${target.logDir}/access.log json;`,
          '# Temporary files of this nginx, not the system-wide ones.',
          ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map(
            (kind) => `${kind}_temp_path ${target.runDir}/${kind};`,
          ),
        ]
      : [
          "# In the nginx image these two files are links to the container's stdout and stderr.",
          `access_log ${target.logDir}/access.log json;`,
        ]),
    '',
    'server_tokens off;',
    'keepalive_timeout 65s;',
    `# docs/api.md: bodies over ${kib} KiB are 413, here as in the functions (shared/http/app.ts MAX_BODY_BYTES).`,
    `client_max_body_size ${kib}k;`,
    `client_body_buffer_size ${kib}k;`,
    '',
    "# X-Request-Id: the client's when it is 1..128 of [A-Za-z0-9._-] (as the functions accept), else a new one.",
    'map $http_x_request_id $req_id {',
    `${INDENT}default $request_id;`,
    `${INDENT}"~^[A-Za-z0-9._-]{1,128}$" $http_x_request_id;`,
    '}',
    '',
    '# The path, for problem bodies nginx writes itself, only when it needs no escaping inside a JSON string.',
    'map $uri $problem_instance {',
    `${INDENT}default "";`,
    `${INDENT}"~^[A-Za-z0-9._~/:@!*+,;=-]*$" $uri;`,
    '}',
  ]
}

/** Lines of the server{} block both configurations share. */
function serverPreamble(target: NginxRuntime): string[] {
  return [
    ...target.listen.map((listen) => `listen ${listen};`),
    ...(target.tls
      ? [
          "# TLS 1.2 and 1.3 only; the ciphers are OpenSSL's defaults for those versions.",
          `ssl_certificate ${target.tls.certificate};`,
          `ssl_certificate_key ${target.tls.key};`,
          'ssl_protocols TLSv1.2 TLSv1.3;',
          'ssl_session_cache shared:TLS:1m;',
          'ssl_session_timeout 10m;',
        ]
      : []),
    'server_name _;',
    '# Bodies nginx writes itself (the named locations below) are problem JSON.',
    'default_type application/problem+json;',
    '',
    'proxy_http_version 1.1;',
    '# Keep-alive to the upstreams: no Connection: close from the client is passed on.',
    'proxy_set_header Connection "";',
    'proxy_set_header Host $host;',
    'proxy_set_header X-Request-Id $req_id;',
    'proxy_set_header X-Real-IP $remote_addr;',
    'proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;',
    'proxy_set_header X-Forwarded-Proto $scheme;',
    '# The function echoes the X-Request-Id it was given; nginx adds it to every response, its own included.',
    'proxy_hide_header X-Request-Id;',
    'add_header X-Request-Id $req_id always;',
    'proxy_connect_timeout 2s;',
    'proxy_send_timeout 30s;',
    'proxy_read_timeout 30s;',
    '# Another instance is tried only when the request never reached one; nginx never retries a POST or PATCH.',
    'proxy_next_upstream error timeout;',
    'proxy_next_upstream_tries 2;',
    '',
    'error_page 404 @not_found;',
    'error_page 413 @payload_too_large;',
    'error_page 502 503 504 =503 @unavailable;',
    '',
    'location @not_found {',
    `${INDENT}return 404 ${problemBody('NOT_FOUND', 'No route for $request_method $problem_instance')};`,
    '}',
    'location @payload_too_large {',
    `${INDENT}return 413 ${problemBody('PAYLOAD_TOO_LARGE', `Request bodies are limited to ${MAX_BODY_BYTES} bytes`)};`,
    '}',
    'location @unavailable {',
    `${INDENT}add_header X-Request-Id $req_id always;`,
    `${INDENT}add_header Retry-After 1 always;`,
    `${INDENT}return 503 ${problemBody('SERVICE_UNAVAILABLE', 'No instance of this function is available; retry shortly')};`,
    '}',
    '',
    "# Liveness of nginx itself, for the orchestrator. Functions' own /health/* are not public.",
    'location = /health/live {',
    `${INDENT}access_log off;`,
    `${INDENT}default_type application/json;`,
    `${INDENT}return 200 '{"status":"live"}';`,
    '}',
    '# Never public: Prometheus scrapes every container directly on the internal network.',
    'location = /metrics {',
    `${INDENT}return 404;`,
    '}',
  ]
}

const block = (header: string, body: string[], depth = 1): string[] => {
  const pad = INDENT.repeat(depth)
  return [
    `${pad}${header} {`,
    ...body.map((line) => (line === '' ? '' : `${pad}${INDENT}${line}`)),
    `${pad}}`,
  ]
}

function upstream(name: string, servers: string[]): string[] {
  return block(`upstream ${name}`, [
    'least_conn;',
    ...servers.map((server) => `server ${server} max_fails=3 fail_timeout=10s;`),
    'keepalive 32;',
    // Below the functions' keepAliveTimeout, so nginx never reuses a connection a function is closing; a
    // draining function waits this long before it closes idle connections itself (shared/runtime/server.ts).
    `keepalive_timeout ${UPSTREAM_KEEPALIVE_TIMEOUT_MS / 1000}s;`,
  ])
}

const mainContext = (target: NginxRuntime) => [
  'worker_processes auto;',
  'worker_rlimit_nofile 16384;',
  `error_log ${target.logDir}/error.log warn;`,
  ...(target.runDir ? [`pid ${target.runDir}/nginx.pid;`] : []),
  '',
  'events {',
]
const mainContextEnd = [`${INDENT}worker_connections 4096;`, '}', '']

/** What differs between the places nginx runs: how it listens, where its files are. */
type NginxRuntime = {
  /** The parameters of each `listen` directive of the one server. */
  listen: string[]
  /** Certificate and key for the listeners marked `ssl`. */
  tls?: { certificate: string; key: string }
  logDir: string
  /** Outside a container: the folder of this nginx's pid and temporary files. */
  runDir?: string
}

/** One rendering of the "one process per function" configuration: Compose's, or the local cluster's. */
export type NginxTarget = NginxRuntime & {
  /** Comment lines after the generated-by line. */
  about: string[]
  /** The servers (host:port) of a function's upstream, one per instance. */
  servers(fn: string): string[]
  /** The folder holding openapi.json and docs.html (renderDocs). */
  docsRoot: string
}

/** The committed infra/nginx/nginx.conf: one upstream per compose service (Docker's DNS finds its replicas). */
export const COMPOSE_NGINX: NginxTarget = {
  about: [
    'One upstream per function: the compose service of the same name (docker-compose.yml), port 8080.',
    'After `docker compose up --scale <function>=N`, reload nginx to pick up the new addresses.',
  ],
  listen: ['80 default_server'],
  logDir: '/var/log/nginx',
  servers: (fn) => [`${fn}:${FUNCTION_PORT}`],
  docsRoot: DOCS_ROOT_IN_NGINX_IMAGE,
}

/**
 * The "one container per function" deployment: one upstream per function, one location per route path
 * (the methods a path does not serve get 405), and the API reference of every function at /docs.
 */
export function renderNginx(model: InfraModel, target: NginxTarget = COMPOSE_NGINX): string {
  // Grouped by what nginx matches: /v1/things/:id and /v1/things/:thingId are one location.
  const byPattern = new Map<string, HttpEntry[]>()
  for (const fn of [...model.functions].sort(byRouteSpecificity)) {
    const pattern = pathRegex(fn.route.path)
    const list = byPattern.get(pattern) ?? []
    const clash = list.find((other) => other.route.method === fn.route.method)
    if (clash) {
      throw new Error(
        `${fn.route.method} ${fn.route.path} is served by both ${clash.name} (${clash.route.path}) and ${fn.name}`,
      )
    }
    byPattern.set(pattern, [...list, fn])
  }

  const locations: string[] = []
  for (const fns of byPattern.values()) {
    const path = (fns[0] as HttpEntry).route.path
    const allowed = fns.flatMap((fn) => methodsFor(fn.route.method))
    const notAllowed = [
      'add_header X-Request-Id $req_id always;',
      `add_header Allow "${allowed.join(', ')}" always;`,
      `return 405 ${problemBody('METHOD_NOT_ALLOWED', `${path} accepts ${allowed.join(', ')}`)};`,
    ]
    const matcher = isStatic(path) ? `= ${path}` : `~ "${pathRegex(path)}"`
    const body: string[] = []
    const [only] = fns
    if (fns.length === 1 && only) {
      body.push(
        ...block(`if ($request_method !~ "^(${allowed.join('|')})$")`, notAllowed, 0),
        `proxy_pass http://${only.name};`,
      )
    } else {
      body.push('set $function "";')
      for (const fn of fns) {
        body.push(`if ($request_method ~ "^(${methodsFor(fn.route.method).join('|')})$") {`)
        body.push(`${INDENT}set $function ${fn.name};`, '}')
      }
      body.push(...block('if ($function = "")', notAllowed, 0), 'proxy_pass http://$function;')
    }
    locations.push(
      ...fns.map((fn) => `# ${fn.route.method} ${fn.route.path} -> ${fn.name}`),
      ...block(`location ${matcher}`, body, 0),
      '',
    )
  }

  const docsLocation = (path: string, file: string, type: string) => [
    ...block(
      `location = ${path}`,
      [
        ...block(
          'if ($request_method !~ "^(GET|HEAD)$")',
          [
            'add_header X-Request-Id $req_id always;',
            'add_header Allow "GET, HEAD" always;',
            `return 405 ${problemBody('METHOD_NOT_ALLOWED', `${path} accepts GET, HEAD`)};`,
          ],
          0,
        ),
        // By the file's extension, so that nginx's own answers (405 above, 404) stay problem JSON.
        `types { ${type} ${file.split('.').pop()}; }`,
        'charset utf-8;',
        `charset_types ${type};`,
        `root ${target.docsRoot};`,
        `try_files /${file} =404;`,
      ],
      0,
    ),
  ]

  return [
    `# ${GENERATED('functions/*/route.ts')}`,
    ...target.about.map((line) => `# ${line}`),
    ...mainContext(target),
    ...mainContextEnd,
    'http {',
    ...httpPreamble(target).map((line) => (line === '' ? '' : `${INDENT}${line}`)),
    '',
    ...model.functions.flatMap((fn) => [...upstream(fn.name, target.servers(fn.name)), '']),
    ...block('server', [
      ...serverPreamble(target),
      '',
      '# Routes, most specific first (static segments before parameters). Ids are validated by the',
      '# function (a bad one is 400, docs/api.md), so a parameter matches any one path segment here.',
      ...locations,
      '# The API reference of every function, rendered by `npm run gen:infra` from the schemas that validate.',
      ...docsLocation('/openapi.json', 'openapi.json', 'application/json'),
      ...docsLocation('/docs', 'docs.html', 'text/html'),
      '',
      'location / {',
      `${INDENT}return 404;`,
      '}',
    ]),
    '}',
    '',
  ].join('\n')
}

/** `npm start` (every function in one process on 127.0.0.1:8080) behind nginx on the same host. */
export function renderSingleNginx(): string {
  const target: NginxRuntime = { listen: ['80 default_server'], logDir: '/var/log/nginx' }
  return [
    `# ${GENERATED('the shared nginx settings')}`,
    '# The single-process deployment: `npm start` serves every function on 127.0.0.1:8080; nginx in front',
    '# adds request ids, limits and proxy headers and keeps /metrics private.',
    ...mainContext(target),
    ...mainContextEnd,
    'http {',
    ...httpPreamble(target).map((line) => (line === '' ? '' : `${INDENT}${line}`)),
    '',
    ...upstream('app', [`127.0.0.1:${FUNCTION_PORT}`]),
    '',
    ...block('server', [
      ...serverPreamble(target),
      '',
      "# Everything else, unknown routes included, is the app's to answer.",
      'location / {',
      `${INDENT}proxy_pass http://app;`,
      '}',
    ]),
    '}',
    '',
  ].join('\n')
}

/**
 * The API reference of every function, for nginx to serve at /openapi.json and /docs: each function's
 * process documents only its own route, so the whole API is rendered here, as `npm start` renders it.
 */
export function renderDocs(model: InfraModel): { 'openapi.json': string; 'docs.html': string } {
  const document = buildOpenApiDocument([...model.functions].sort(byRouteSpecificity))
  return { 'openapi.json': JSON.stringify(document), 'docs.html': renderDocsHtml(document) }
}

// ----------------------------------------------------------------------------------------- prometheus

export function renderPrometheus(model: InfraModel): string {
  const dnsJob = (job: string, names: string[], what: string) => [
    `  # ${what}. Docker's DNS answers a service name with every replica's address.`,
    `  - job_name: ${job}`,
    '    metrics_path: /metrics',
    '    dns_sd_configs:',
    '      - type: A',
    `        port: ${FUNCTION_PORT}`,
    '        refresh_interval: 30s',
    '        names:',
    ...names.map((name) => `          - ${name}`),
    '    relabel_configs:',
    '      - source_labels: [__meta_dns_name]',
    '        target_label: function',
  ]
  return [
    `# ${GENERATED('the functions/ folder')}`,
    'global:',
    '  scrape_interval: 15s',
    '  evaluation_interval: 15s',
    '  external_labels:',
    '    system: commerce',
    '',
    'rule_files:',
    '  - alerts.yml',
    '',
    'scrape_configs:',
    ...dnsJob(
      'functions',
      model.functions.map((fn) => fn.name),
      'Every HTTP function container',
    ),
    ...(model.workers.length > 0
      ? dnsJob('workers', model.workers, 'Every worker container (outbox relay, statistics consumer)')
      : []),
    "  # RabbitMQ's built-in Prometheus endpoint: aggregated metrics, then per-queue depths (dead-letter queues).",
    '  - job_name: rabbitmq',
    '    static_configs:',
    '      - targets: [rabbitmq:15692]',
    '  - job_name: rabbitmq-queues',
    '    metrics_path: /metrics/detailed',
    '    params:',
    '      family: [queue_coarse_metrics]',
    '    static_configs:',
    '      - targets: [rabbitmq:15692]',
    '  - job_name: prometheus',
    '    static_configs:',
    '      - targets: [localhost:9090]',
    '',
  ].join('\n')
}

// -------------------------------------------------------------------------------------------- compose

/**
 * The whole stack for `docker compose up`. Function and worker services share one image and differ by
 * their command (the function name), so they are one YAML anchor (x-function) plus a line each.
 */
export function renderCompose(model: InfraModel): string {
  const entries = [...model.functions.map((fn) => fn.name), ...model.workers].sort()
  const instances = instancesOf(model)
  const budget = topologyBudget(model)
  const functionService = (name: string, what: string) => [
    `  # ${what}`,
    `  ${name}:`,
    '    <<: *function',
    `    command: [${name}]`,
    ...((instances.get(name) ?? 1) > 1 ? ['    deploy:', `      replicas: ${instances.get(name)}`] : []),
  ]
  return `# ${GENERATED('the functions/ folder')}
# Usage: JWT_SECRET=<32+ characters> docker compose up -d --build, then http://localhost/v1/products.
# Passwords below default to development values; set MYSQL_ROOT_PASSWORD, MYSQL_PASSWORD,
# MYSQL_REPLICATION_PASSWORD, RABBITMQ_PASSWORD, PROXYSQL_ADMIN_PASSWORD and GRAFANA_ADMIN_PASSWORD for
# anything else (letters and digits only: MYSQL_PASSWORD and RABBITMQ_PASSWORD are put into URLs unescaped).
# Connection budget (scripts/connection-budget.ts): at most ${budget.primary} connections to the primary and ${budget.replica} to
# the replica with every pool full; MariaDB's max_connections is ${budget.maxConnections} (infra/mysql/connections.cnf).
# Through the connection proxy instead: DATABASE_HOST=mysql-proxy DATABASE_PORT=6033 DATABASE_REPLICA_HOST=mysql-proxy
# DATABASE_REPLICA_PORT=6034 docker compose --profile proxy up -d (docs/scaling.md#connection-proxy).

x-app-environment: &app-environment
  NODE_ENV: production
  PORT: "${FUNCTION_PORT}"
  DATABASE_URL: mysql://commerce:\${MYSQL_PASSWORD:-commerce-dev}@\${DATABASE_HOST:-mysql-primary}:\${DATABASE_PORT:-3306}/commerce
  DATABASE_REPLICA_URL: mysql://commerce:\${MYSQL_PASSWORD:-commerce-dev}@\${DATABASE_REPLICA_HOST:-mysql-replica}:\${DATABASE_REPLICA_PORT:-3306}/commerce
  DATABASE_POOL_SIZE: "${POOLS.poolSize}"
  DATABASE_REPLICA_POOL_SIZE: "${POOLS.replicaPoolSize}"
  REDIS_URL: redis://redis:6379
  RABBITMQ_URL: amqp://commerce:\${RABBITMQ_PASSWORD:-commerce-dev}@rabbitmq:5672
  JWT_SECRET: \${JWT_SECRET:?set JWT_SECRET to a secret of at least 32 characters}
  # Set only during a rotation: tokens signed with it are still accepted (docs/operations.md).
  JWT_SECRET_PREVIOUS: \${JWT_SECRET_PREVIOUS:-}
  BUSINESS_TIMEZONE: Asia/Seoul
  LOG_LEVEL: info

# Every function and worker: the one image, started with its name as the command.
x-function: &function
  image: ${IMAGE}
  build: .
  restart: unless-stopped
  environment: *app-environment
  expose: ["${FUNCTION_PORT}"]
  # In-flight requests finish and pools close within 10 s of SIGTERM (shared/runtime/server.ts).
  stop_grace_period: 15s
  healthcheck:
    test: [CMD, node, /app/healthcheck.mjs]
    interval: 5s
    timeout: 3s
    retries: 5
    start_period: 10s
  depends_on:
    migrate:
      condition: service_completed_successfully
    mysql-replica:
      condition: service_healthy
    redis:
      condition: service_healthy
    rabbitmq:
      condition: service_healthy

services:
  nginx:
    image: nginx:1.27-alpine
    restart: unless-stopped
    ports: ["\${HTTP_PORT:-80}:80"]
    volumes:
      - ./infra/nginx/nginx.conf:/etc/nginx/nginx.conf:ro
      - ./infra/nginx/docs:${DOCS_ROOT_IN_NGINX_IMAGE}:ro
    healthcheck:
      test: [CMD, wget, -q, -O, /dev/null, http://127.0.0.1/health/live]
      interval: 10s
      timeout: 3s
      retries: 3
    depends_on:
${model.functions.map((fn) => `      ${fn.name}:\n        condition: service_healthy`).join('\n')}

  # Applies pending migrations (shared/db/migrations) once, before any function starts.
  migrate:
    image: ${IMAGE}
    build: .
    command: [migrate]
    restart: "no"
    environment: *app-environment
    depends_on:
      mysql-primary:
        condition: service_healthy

${entries
  .map((name) =>
    functionService(
      name,
      model.workers.includes(name)
        ? `worker: no HTTP route; /health and /metrics on ${FUNCTION_PORT} like every function`
        : (() => {
            const fn = model.functions.find((f) => f.name === name)
            return `${fn?.route.method} ${fn?.route.path}`
          })(),
    ).join('\n'),
  )
  .join('\n\n')}

  # MariaDB, as in development and tests. Primary with a binary log; the replica follows it by GTID
  # (the image's MARIADB_REPLICATION_* / MARIADB_MASTER_HOST set-up) and serves statistics and reads.
  mysql-primary:
    image: mariadb:11.4
    restart: unless-stopped
    command: [--server-id=1, --log-bin, --log-basename=mariadb]
    environment:
      MARIADB_ROOT_PASSWORD: \${MYSQL_ROOT_PASSWORD:-root-dev}
      MARIADB_DATABASE: commerce
      MARIADB_USER: commerce
      MARIADB_PASSWORD: \${MYSQL_PASSWORD:-commerce-dev}
      MARIADB_REPLICATION_USER: replication
      MARIADB_REPLICATION_PASSWORD: \${MYSQL_REPLICATION_PASSWORD:-replication-dev}
    volumes:
      - mysql-primary-data:/var/lib/mysql
      - ./infra/mysql/server.cnf:/etc/mysql/conf.d/server.cnf:ro
      - ./infra/mysql/connections.cnf:/etc/mysql/conf.d/connections.cnf:ro
    ports: ["127.0.0.1:\${MYSQL_HOST_PORT:-3306}:3306"]
    healthcheck:
      test: [CMD, healthcheck.sh, --connect, --innodb_initialized]
      interval: 5s
      timeout: 5s
      retries: 20
      start_period: 30s

  mysql-replica:
    image: mariadb:11.4
    restart: unless-stopped
    command: [--server-id=2, --log-basename=mariadb]
    environment:
      MARIADB_ROOT_PASSWORD: \${MYSQL_ROOT_PASSWORD:-root-dev}
      MARIADB_MASTER_HOST: mysql-primary
      MARIADB_REPLICATION_USER: replication
      MARIADB_REPLICATION_PASSWORD: \${MYSQL_REPLICATION_PASSWORD:-replication-dev}
      MARIADB_HEALTHCHECK_GRANTS: REPLICA MONITOR
    volumes:
      - mysql-replica-data:/var/lib/mysql
      - ./infra/mysql/server.cnf:/etc/mysql/conf.d/server.cnf:ro
      - ./infra/mysql/connections.cnf:/etc/mysql/conf.d/connections.cnf:ro
      - ./infra/mysql/replica.cnf:/etc/mysql/conf.d/replica.cnf:ro
    healthcheck:
      test: [CMD, healthcheck.sh, --connect, --replication_io, --replication_sql, --replication]
      interval: 5s
      timeout: 5s
      retries: 20
      start_period: 30s
    depends_on:
      mysql-primary:
        condition: service_healthy

  # Connection proxy, off unless asked for (\`--profile proxy\`): many function instances share a bounded
  # set of MariaDB connections. Port 6033 is the primary, 6034 the replica (docs/scaling.md#connection-proxy).
  mysql-proxy:
    image: ${PROXYSQL_IMAGE}
    profiles: [proxy]
    restart: unless-stopped
    environment:
      MYSQL_PASSWORD: \${MYSQL_PASSWORD:-commerce-dev}
      PROXYSQL_ADMIN_PASSWORD: \${PROXYSQL_ADMIN_PASSWORD:-admin-dev}
    # The passwords come from the environment into a copy of the static file, never into the repository.
    entrypoint:
      - sh
      - -c
      - >-
        ${proxySqlStart('/etc/proxysql.cnf.in', '$$')}
    volumes:
      - ./infra/mysql/proxysql.cnf:/etc/proxysql.cnf.in:ro
    expose: ["6033", "6034"]
    depends_on:
      mysql-primary:
        condition: service_healthy
      mysql-replica:
        condition: service_healthy

  # Cache, locks, rate limits and BullMQ (which requires noeviction): one Redis, no replica. An
  # asynchronous replica could answer with a cache entry already invalidated, a lock already taken or
  # coupon state already claimed on the primary, so nothing may read from one (docs/operations.md#topology).
  redis:
    image: redis:7.4-alpine
    restart: unless-stopped
    command: [redis-server, /usr/local/etc/redis/redis.conf, --protected-mode, "no"]
    volumes:
      - ./infra/redis/redis.conf:/usr/local/etc/redis/redis.conf:ro
      - redis-data:/data
    ports: ["127.0.0.1:\${REDIS_HOST_PORT:-6379}:6379"]
    healthcheck:
      test: [CMD, redis-cli, ping]
      interval: 5s
      timeout: 3s
      retries: 10

  rabbitmq:
    image: rabbitmq:3.13-management
    restart: unless-stopped
    # A fixed node name, so that the data volume is found again after the container is recreated.
    hostname: rabbitmq
    environment:
      RABBITMQ_DEFAULT_USER: commerce
      RABBITMQ_DEFAULT_PASS: \${RABBITMQ_PASSWORD:-commerce-dev}
    volumes:
      - rabbitmq-data:/var/lib/rabbitmq
    ports:
      - "127.0.0.1:\${RABBITMQ_HOST_PORT:-5672}:5672"
      - "127.0.0.1:\${RABBITMQ_MANAGEMENT_PORT:-15672}:15672"
    healthcheck:
      test: [CMD, rabbitmq-diagnostics, -q, check_port_connectivity]
      interval: 10s
      timeout: 10s
      retries: 12
      start_period: 20s

  prometheus:
    image: prom/prometheus:v2.53.2
    restart: unless-stopped
    command:
      - --config.file=/etc/prometheus/prometheus.yml
      - --storage.tsdb.path=/prometheus
      - --storage.tsdb.retention.time=15d
    volumes:
      - ./infra/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro
      - ./infra/prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro
      - prometheus-data:/prometheus
    ports: ["127.0.0.1:\${PROMETHEUS_PORT:-9090}:9090"]
    healthcheck:
      test: [CMD, wget, -q, -O, /dev/null, http://127.0.0.1:9090/-/ready]
      interval: 10s
      timeout: 3s
      retries: 5

  grafana:
    image: grafana/grafana:11.2.0
    restart: unless-stopped
    environment:
      GF_SECURITY_ADMIN_PASSWORD: \${GRAFANA_ADMIN_PASSWORD:-admin}
      GF_USERS_ALLOW_SIGN_UP: "false"
    volumes:
      - ./infra/grafana/provisioning:/etc/grafana/provisioning:ro
      - ./infra/grafana/dashboards:/etc/grafana/dashboards:ro
      - grafana-data:/var/lib/grafana
    ports: ["127.0.0.1:\${GRAFANA_PORT:-3000}:3000"]
    depends_on:
      prometheus:
        condition: service_healthy

${BACKUP_COMPOSE_SERVICE}
volumes:
  mysql-primary-data:
  mysql-replica-data:
  redis-data:
  rabbitmq-data:
  prometheus-data:
  grafana-data:
${BACKUP_COMPOSE_VOLUME}
`
}

// ------------------------------------------------------------------------------------------------ main

/** Repository-relative path → content of every generated file. */
export async function renderInfra(dir: URL = FUNCTIONS_DIR): Promise<Record<string, string>> {
  const model = await loadModel(dir)
  return {
    'infra/nginx/nginx.conf': renderNginx(model),
    'infra/nginx/single.conf': renderSingleNginx(),
    ...Object.fromEntries(
      Object.entries(renderDocs(model)).map(([file, content]) => [`infra/nginx/docs/${file}`, content]),
    ),
    'infra/prometheus/prometheus.yml': renderPrometheus(model),
    'docker-compose.yml': renderCompose(model),
    ...renderKubernetes(model),
    'infra/mysql/proxysql.cnf': renderProxySqlCnf(),
    'infra/mysql/connections.cnf': renderConnectionsCnf(
      topologyBudget(model),
      'the instances in docker-compose.yml',
    ),
  }
}

/** The generated files whose committed content differs from what renderInfra produces now. */
export async function staleFiles(root = ROOT): Promise<string[]> {
  const rendered = await renderInfra()
  const stale: string[] = []
  for (const [path, content] of Object.entries(rendered)) {
    const current = await readFile(join(root, path), 'utf8').catch(() => undefined)
    if (current !== content) stale.push(path)
  }
  return stale
}

async function main(args: string[]) {
  if (args.includes('--check')) {
    const stale = await staleFiles()
    if (stale.length > 0) {
      process.stderr.write(`Out of date: ${stale.join(', ')}. Run \`npm run gen:infra\` and commit.\n`)
      process.exit(1)
    }
    process.stdout.write('Generated infrastructure files are up to date\n')
    return
  }
  for (const [path, content] of Object.entries(await renderInfra())) {
    const target = join(ROOT, path)
    await mkdir(dirname(target), { recursive: true })
    const before = await readFile(target, 'utf8').catch(() => undefined)
    await writeFile(target, content)
    process.stdout.write(`${before === content ? 'unchanged' : 'wrote    '} ${relative(ROOT, target)}\n`)
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    await main(process.argv.slice(2))
  } catch (error) {
    process.stderr.write(`gen:infra failed: ${error instanceof Error ? error.message : String(error)}\n`)
    process.exit(1)
  }
}
