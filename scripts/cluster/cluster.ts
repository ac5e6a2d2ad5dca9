import { execFileSync, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import amqp from 'amqplib'
import { ENV_VARS, redactUrl } from '../../shared/config'
import { redisAnswers } from '../../shared/redis/client'
import { type ConnectionBudget, ConnectionBudgetError } from '../connection-budget'
import {
  type InfraModel,
  loadModel,
  POOLS,
  renderConnectionsCnf,
  renderDocs,
  renderNginx,
  topologyBudget,
} from '../gen-infra'
import {
  APP_USER,
  DATABASE,
  type DatabaseSecrets,
  initDataFolders,
  type MariaDbServer,
  rootConnection,
  serverOf,
  setUpPrimary,
  setUpReplica,
  startServer,
  waitForReplica,
  waitForServer,
  writeServerCnf,
} from './mariadb'
import {
  childrenOf,
  ensureProgram,
  freePort,
  isAlive,
  isOurs,
  listening,
  spawnDetached,
  tail,
  terminate,
  waitUntil,
} from './processes'

/**
 * `npm run cluster`: the production topology on one machine, without Docker. nginx (HTTP and HTTPS) in
 * front of every function bundle as its own process, the workers as their own processes, a MariaDB
 * primary and replica, Redis, and RabbitMQ in a vhost of its own. Everything it starts and writes lives
 * in one state folder; `stop` ends exactly the processes recorded there.
 */

export const ROOT = fileURLToPath(new URL('../..', import.meta.url))
export const DEFAULT_STATE_DIR = join(ROOT, '.cluster')
export const DEFAULT_HTTP_PORT = 8088
export const DEFAULT_HTTPS_PORT = 8443
export const DEFAULT_VHOST = 'commerce-cluster'

export type ProcessKind = 'mariadb' | 'redis' | 'function' | 'worker' | 'nginx'

export type ProcessRecord = {
  /** `order-create#2`, `mariadb-primary`, `redis`, `nginx`. */
  name: string
  kind: ProcessKind
  /** The function or worker folder, for kinds function and worker. */
  entry?: string
  pid: number
  /** With the pid, what identifies the process (processes.ts Started). */
  startTime: string
  /** Where it listens (nginx: its HTTP port; the HTTPS one is in the state). */
  port: number
  log: string
}

export type ClusterState = {
  stateDir: string
  httpPort: number
  httpsPort: number
  /** RabbitMQ in the cluster's own vhost (the state file is readable by its owner only). */
  rabbitmqUrl: string
  instances: Record<string, number>
  budget: Pick<ConnectionBudget, 'primary' | 'replica' | 'maxConnections'>
  /** The application's variables the cluster was started with (rate limits, log level, …). */
  appEnv: Record<string, string>
  processes: ProcessRecord[]
}

type Secrets = DatabaseSecrets & { jwtSecret: string }

export type StartOptions = {
  stateDir: string
  httpPort: number
  httpsPort: number
  /** Instances per function or worker over scripts/gen-infra.ts INSTANCES. */
  scale?: Record<string, number>
  /** The broker: its vhost is replaced by `vhost`. */
  rabbitmqUrl: string
  vhost: string
  /** Application variables for every function (the cluster sets the connection ones itself). */
  appEnv?: Record<string, string>
  /** Used instead of a generated secret. */
  jwtSecret?: string
  say?: (line: string) => void
}

export class ClusterError extends Error {
  override name = 'ClusterError'
}

const DIST = join(ROOT, 'dist')
const stateFile = (stateDir: string) => join(stateDir, 'cluster.json')
const logsDir = (stateDir: string) => join(stateDir, 'logs')

/** The variables the cluster decides itself: they cannot be passed through. */
const CONTROLLED = new Set([
  'PORT',
  'DATABASE_URL',
  'DATABASE_REPLICA_URL',
  'DATABASE_POOL_SIZE',
  'DATABASE_REPLICA_POOL_SIZE',
  'REDIS_URL',
  'RABBITMQ_URL',
  'JWT_SECRET',
  'NODE_ENV',
])

/** The application's variables set in `env` that the cluster passes on to every function. */
export function passThrough(env: NodeJS.ProcessEnv): Record<string, string> {
  return Object.fromEntries(
    Object.entries(env).filter(
      (entry): entry is [string, string] =>
        ENV_VARS.includes(entry[0]) && !CONTROLLED.has(entry[0]) && entry[1] !== undefined && entry[1] !== '',
    ),
  )
}

export function readState(stateDir: string): ClusterState | undefined {
  try {
    return JSON.parse(readFileSync(stateFile(stateDir), 'utf8')) as ClusterState
  } catch {
    return undefined
  }
}

function writeState(state: ClusterState) {
  writeFileSync(stateFile(state.stateDir), `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 })
}

/** The recorded processes that still run. */
export const runningProcesses = (stateDir: string) =>
  (readState(stateDir)?.processes ?? []).filter((p) => isOurs(p))

/**
 * The cluster's MySQL passwords (generated once) and its JWT secret (JWT_SECRET when given, else
 * generated once), in files of the state folder that only their owner can read: restarts need them, and
 * `npm run token` needs the JWT secret to sign for this cluster.
 */
function loadOrCreateSecrets(stateDir: string, jwtSecret: string | undefined): Secrets {
  const file = join(stateDir, 'secrets.json')
  const jwtFile = join(stateDir, 'jwt-secret')
  const stored = existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as Partial<DatabaseSecrets>) : {}
  const secret = () => randomBytes(24).toString('base64url')
  const database: DatabaseSecrets = {
    appPassword: stored.appPassword ?? secret(),
    replicationPassword: stored.replicationPassword ?? secret(),
  }
  writeFileSync(file, `${JSON.stringify(database)}\n`, { mode: 0o600 })
  const jwt = jwtSecret ?? (existsSync(jwtFile) ? readFileSync(jwtFile, 'utf8').trim() : secret())
  writeFileSync(jwtFile, `${jwt}\n`, { mode: 0o600 })
  return { ...database, jwtSecret: jwt }
}

const mysqlUrl = (password: string, port: number) =>
  `mysql://${APP_USER}:${encodeURIComponent(password)}@127.0.0.1:${port}/${DATABASE}`

function withVhost(url: string, vhost: string): string {
  const parsed = new URL(url)
  parsed.pathname = `/${encodeURIComponent(vhost)}`
  return parsed.toString()
}

/** The cluster's vhost exists and its user may use it; created with rabbitmqctl when it is missing. */
async function ensureVhost(url: string, vhost: string, say: (line: string) => void): Promise<void> {
  const connect = async () => {
    const connection = await amqp.connect(url)
    await connection.close()
  }
  try {
    await connect()
    return
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error)
    // The broker answered but closed the connection: a missing vhost (or a refused user, said below).
    if (!/ConnectionClose|vhost|NOT_ALLOWED/i.test(message)) {
      throw new ClusterError(`Cannot reach RabbitMQ at ${redactUrl(url)} (${message}). Set RABBITMQ_URL.`)
    }
  }
  const user = decodeURIComponent(new URL(url).username || 'guest')
  const howTo =
    `Create it with \`rabbitmqctl add_vhost ${vhost}\` and ` +
    `\`rabbitmqctl set_permissions -p ${vhost} ${user} '.*' '.*' '.*'\`.`
  const list = spawnSync('rabbitmqctl', ['list_vhosts', '--quiet', '--no-table-headers', 'name'], {
    encoding: 'utf8',
  })
  if (list.status !== 0)
    throw new ClusterError(`RabbitMQ refused vhost ${vhost}, and rabbitmqctl is not usable. ${howTo}`)
  if (list.stdout.split('\n').some((line) => line.trim() === vhost)) {
    throw new ClusterError(
      `RabbitMQ refused ${user} on vhost ${vhost}: check the user's password and permissions.`,
    )
  }
  say(`creating RabbitMQ vhost ${vhost} (rabbitmqctl)`)
  try {
    execFileSync('rabbitmqctl', ['add_vhost', vhost], { stdio: 'pipe' })
    execFileSync('rabbitmqctl', ['set_permissions', '-p', vhost, user, '.*', '.*', '.*'], { stdio: 'pipe' })
  } catch {
    throw new ClusterError(`rabbitmqctl could not create vhost ${vhost}. ${howTo}`)
  }
  await connect()
}

/** Removes the cluster's vhost (with its queues); for a test's own vhost. */
export function deleteVhost(vhost: string) {
  spawnSync('rabbitmqctl', ['delete_vhost', vhost], { stdio: 'ignore' })
}

/** A self-signed certificate for 127.0.0.1 and localhost, made once per state folder. */
function ensureCertificate(stateDir: string): { certificate: string; key: string } {
  const dir = join(stateDir, 'tls')
  const certificate = join(dir, 'cert.pem')
  const key = join(dir, 'key.pem')
  if (existsSync(certificate) && existsSync(key)) return { certificate, key }
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-days',
      '365',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=DNS:localhost,IP:127.0.0.1',
      '-keyout',
      key,
      '-out',
      certificate,
    ],
    { stdio: 'pipe' },
  )
  chmodSync(key, 0o600)
  return { certificate, key }
}

/** The cluster's nginx configuration: the generated one, rendered for this machine's processes. */
function renderClusterNginx(model: InfraModel, state: ClusterState): string {
  const nginxDir = join(state.stateDir, 'nginx')
  return renderNginx(model, {
    about: [
      `The local cluster (npm run cluster, state in ${state.stateDir}): every instance on 127.0.0.1.`,
      'Rewritten and reloaded by the cluster script on a rolling restart; not committed.',
    ],
    listen: [`127.0.0.1:${state.httpPort} default_server`, `127.0.0.1:${state.httpsPort} ssl default_server`],
    tls: {
      certificate: join(state.stateDir, 'tls', 'cert.pem'),
      key: join(state.stateDir, 'tls', 'key.pem'),
    },
    logDir: join(state.stateDir, 'logs'),
    runDir: nginxDir,
    servers: (fn) =>
      state.processes
        .filter((p) => p.kind === 'function' && p.entry === fn)
        .map((p) => `127.0.0.1:${p.port}`),
    docsRoot: join(nginxDir, 'docs'),
  })
}

const NGINX_PATHS = ['/usr/sbin/nginx', '/usr/bin/nginx', '/usr/local/sbin/nginx']
const nginxBinary = () => NGINX_PATHS.find((path) => existsSync(path)) ?? 'nginx'

function writeNginxConfig(model: InfraModel, state: ClusterState): string {
  const nginxDir = join(state.stateDir, 'nginx')
  const file = join(nginxDir, 'nginx.conf')
  writeFileSync(file, renderClusterNginx(model, state))
  const check = spawnSync(
    nginxBinary(),
    ['-t', '-q', '-p', nginxDir, '-c', file, '-e', join(nginxDir, 'error.log')],
    {
      encoding: 'utf8',
    },
  )
  if (check.status !== 0) throw new ClusterError(`nginx -t refused ${file}:\n${check.stderr}`)
  return file
}

function functionEnv(
  state: ClusterState,
  secrets: Secrets,
  servers: { primary: number; replica: number; redis: number },
  port: number,
): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    ...state.appEnv,
    NODE_ENV: 'production',
    PORT: String(port),
    DATABASE_URL: mysqlUrl(secrets.appPassword, servers.primary),
    DATABASE_REPLICA_URL: mysqlUrl(secrets.appPassword, servers.replica),
    DATABASE_POOL_SIZE: String(POOLS.poolSize),
    DATABASE_REPLICA_POOL_SIZE: String(POOLS.replicaPoolSize),
    REDIS_URL: `redis://127.0.0.1:${servers.redis}`,
    RABBITMQ_URL: state.rabbitmqUrl,
    JWT_SECRET: secrets.jwtSecret,
  }
}

const servicePorts = (state: ClusterState) => {
  const port = (name: string) => state.processes.find((p) => p.name === name)?.port ?? 0
  return { primary: port('mariadb-primary'), replica: port('mariadb-replica'), redis: port('redis') }
}

async function ready(port: number): Promise<boolean> {
  try {
    const response = await fetch(`http://127.0.0.1:${port}/health/ready`, {
      signal: AbortSignal.timeout(2_000),
    })
    await response.arrayBuffer()
    return response.ok
  } catch {
    return false
  }
}

/** Starts one instance of a function or worker on a free port and waits until it is ready. */
async function startInstance(
  state: ClusterState,
  secrets: Secrets,
  entry: string,
  kind: 'function' | 'worker',
  index: number,
): Promise<ProcessRecord> {
  const port = await freePort()
  const name = `${entry}#${index}`
  const log = join(logsDir(state.stateDir), `${entry}-${index}.log`)
  const started = spawnDetached(process.execPath, [join(DIST, 'functions', entry, 'index.mjs')], {
    env: functionEnv(state, secrets, servicePorts(state), port),
    log,
  })
  const { pid } = started
  const record: ProcessRecord = { name, kind, entry, ...started, port, log }
  await waitUntil(`${name} to be ready on port ${port}`, () => ready(port), {
    timeoutMs: 90_000,
    failed: () => (isAlive(pid) ? undefined : `it exited:\n${tail(log)}`),
  })
  return record
}

function loadSecrets(stateDir: string): Secrets {
  const stored = JSON.parse(readFileSync(join(stateDir, 'secrets.json'), 'utf8')) as Secrets
  return { ...stored, jwtSecret: readFileSync(join(stateDir, 'jwt-secret'), 'utf8').trim() }
}

export async function startCluster(options: StartOptions): Promise<ClusterState> {
  const say = options.say ?? (() => undefined)
  const { stateDir } = options
  mkdirSync(logsDir(stateDir), { recursive: true })
  chmodSync(stateDir, 0o755)
  const alreadyRunning = runningProcesses(stateDir)
  if (alreadyRunning.length > 0) {
    throw new ClusterError(
      `The cluster in ${stateDir} already runs (${alreadyRunning.length} processes). ` +
        '`npm run cluster -- status` shows them; `npm run cluster -- stop` stops them.',
    )
  }

  const model = await loadModel()
  const entries = [...model.functions.map((fn) => fn.name), ...model.workers]
  const missing = [...entries.map((name) => join('functions', name)), 'migrate'].filter(
    (path) => !existsSync(join(DIST, path, 'index.mjs')),
  )
  if (missing.length > 0) {
    throw new ClusterError(`No bundle at dist/${missing.join(', dist/')}: run \`npm run build\` first.`)
  }
  let budget: ConnectionBudget
  try {
    budget = topologyBudget(model, options.scale)
  } catch (error) {
    if (error instanceof ConnectionBudgetError) throw new ClusterError(error.message)
    throw error
  }
  for (const [program, pkg] of [
    ['mariadbd', 'mariadb-server'],
    ['redis-server', 'redis-server'],
    ['nginx', 'nginx'],
    ['openssl', 'openssl'],
  ] as const) {
    if (!ensureProgram(program, pkg, say)) {
      throw new ClusterError(`${program} is not installed and could not be: apt-get install -y ${pkg}`)
    }
  }
  for (const port of [options.httpPort, options.httpsPort]) {
    if (await listening(port)) {
      throw new ClusterError(
        `Port ${port} is in use: stop what listens there or choose another port (--http-port, --https-port).`,
      )
    }
  }

  const instances = Object.fromEntries(
    entries.map((name) => [name, budget.rows.find((row) => row.name === name)?.instances ?? 1]),
  )
  const state: ClusterState = {
    stateDir,
    httpPort: options.httpPort,
    httpsPort: options.httpsPort,
    rabbitmqUrl: withVhost(options.rabbitmqUrl, options.vhost),
    instances,
    budget: { primary: budget.primary, replica: budget.replica, maxConnections: budget.maxConnections },
    appEnv: options.appEnv ?? {},
    processes: [],
  }
  const record = (process: ProcessRecord) => {
    state.processes.push(process)
    writeState(state)
  }
  writeState(state)

  try {
    const secrets = loadOrCreateSecrets(stateDir, options.jwtSecret)

    say(`MariaDB primary and replica (max_connections ${budget.maxConnections}: the connection budget)`)
    const connectionsCnf = join(stateDir, 'mariadb', 'connections.cnf')
    const servers = [
      serverOf(stateDir, 'primary', await freePort()),
      serverOf(stateDir, 'replica', await freePort()),
    ]
    const fresh = initDataFolders(stateDir, servers)
    writeFileSync(connectionsCnf, renderConnectionsCnf(budget, 'the instances of this cluster'))
    for (const server of servers) {
      writeServerCnf(server, join(ROOT, 'infra', 'mysql'), connectionsCnf)
      const started = startServer(server)
      record({
        name: `mariadb-${server.role}`,
        kind: 'mariadb',
        ...started,
        port: server.port,
        log: server.log,
      })
    }
    const [primary, replica] = servers as [MariaDbServer, MariaDbServer]
    for (const server of servers) {
      const pid = state.processes.find((p) => p.name === `mariadb-${server.role}`)?.pid ?? 0
      await waitForServer(server, () => !isAlive(pid))
    }
    if (fresh) {
      await setUpPrimary(primary, secrets)
      await setUpReplica(replica, primary, secrets)
    } else {
      // The primary's port changed since the last start: point the replica at it again.
      const connection = await rootConnection(replica)
      await connection.query('STOP SLAVE')
      await connection.query('CHANGE MASTER TO MASTER_PORT = ?', [primary.port])
      await connection.query('START SLAVE')
      await connection.end()
    }
    await waitForReplica(replica, primary)

    say('Redis')
    const redisPort = await freePort()
    const redisDir = join(stateDir, 'redis')
    mkdirSync(redisDir, { recursive: true })
    const redisLog = join(logsDir(stateDir), 'redis.log')
    const redis = spawnDetached(
      'redis-server',
      [
        join(ROOT, 'infra', 'redis', 'redis.conf'),
        '--port',
        String(redisPort),
        '--bind',
        '127.0.0.1',
        '--dir',
        redisDir,
      ],
      { env: { PATH: process.env.PATH }, log: redisLog },
    )
    record({ name: 'redis', kind: 'redis', ...redis, port: redisPort, log: redisLog })
    await waitUntil(`Redis on port ${redisPort}`, () => redisAnswers(redisPort), {
      failed: () => (isAlive(redis.pid) ? undefined : `redis-server exited:\n${tail(redisLog)}`),
    })

    say(`RabbitMQ vhost ${options.vhost}`)
    await ensureVhost(state.rabbitmqUrl, options.vhost, say)

    say('migrations')
    const migrate = spawnSync(process.execPath, [join(DIST, 'migrate', 'index.mjs')], {
      env: functionEnv(state, secrets, servicePorts(state), 0),
      encoding: 'utf8',
    })
    if (migrate.status !== 0) throw new ClusterError(`migrations failed:\n${migrate.stderr}${migrate.stdout}`)
    await waitForReplica(replica, primary)

    const toStart = entries.flatMap((entry) =>
      Array.from({ length: instances[entry] ?? 1 }, (_, i) => ({
        entry,
        index: i + 1,
        kind: model.workers.includes(entry) ? ('worker' as const) : ('function' as const),
      })),
    )
    say(`${toStart.length} function and worker processes`)
    const startedInstances = await Promise.allSettled(
      toStart.map(async ({ entry, index, kind }) => {
        const instance = await startInstance(state, secrets, entry, kind, index)
        record(instance)
        return instance
      }),
    )
    const failure = startedInstances.find((result) => result.status === 'rejected')
    if (failure) throw (failure as PromiseRejectedResult).reason

    say(`nginx on ${state.httpPort} (HTTP) and ${state.httpsPort} (HTTPS)`)
    ensureCertificate(stateDir)
    const nginxDir = join(stateDir, 'nginx')
    mkdirSync(join(nginxDir, 'docs'), { recursive: true })
    for (const [file, content] of Object.entries(renderDocs(model)))
      writeFileSync(join(nginxDir, 'docs', file), content)
    const conf = writeNginxConfig(model, state)
    const nginxLog = join(logsDir(stateDir), 'nginx.log')
    const nginx = spawnDetached(
      nginxBinary(),
      ['-p', nginxDir, '-c', conf, '-e', join(nginxDir, 'error.log'), '-g', 'daemon off;'],
      { env: { PATH: process.env.PATH }, log: nginxLog },
    )
    record({ name: 'nginx', kind: 'nginx', ...nginx, port: state.httpPort, log: nginxLog })
    await waitUntil(
      'nginx',
      async () => (await listening(state.httpPort)) && (await listening(state.httpsPort)),
      {
        failed: () =>
          isAlive(nginx.pid)
            ? undefined
            : `nginx exited:\n${tail(nginxLog)}\n${tail(join(nginxDir, 'error.log'))}`,
      },
    )
    return state
  } catch (error) {
    say('start-up failed: stopping what was started')
    await stopCluster(stateDir)
    throw error
  }
}

/** nginx first (no new requests), then functions and workers (they drain), then Redis and MariaDB. */
const STOP_ORDER: ProcessKind[] = ['nginx', 'function', 'worker', 'redis', 'mariadb']

export type StopResult = { stopped: string[]; killed: string[]; stillListening: number[] }

/** Stops every process recorded in the state folder that still runs; data folders are kept. */
export async function stopCluster(stateDir: string): Promise<StopResult> {
  const state = readState(stateDir)
  const result: StopResult = { stopped: [], killed: [], stillListening: [] }
  if (!state) return result
  const stop = async (p: ProcessRecord) => {
    if (!isOurs(p)) return
    const outcome = await terminate(p)
    result[outcome === 'stopped' ? 'stopped' : 'killed'].push(p.name)
  }
  for (const kind of STOP_ORDER) {
    const group = state.processes.filter((p) => p.kind === kind).reverse()
    if (kind === 'mariadb') {
      // The replica before the primary, so that it never loses its primary while running.
      for (const p of group) await stop(p)
    } else {
      await Promise.all(group.map(stop))
    }
  }
  const ports = [...state.processes.map((p) => p.port), state.httpPort, state.httpsPort]
  for (const port of ports) if (await listening(port)) result.stillListening.push(port)
  writeState({ ...state, processes: [] })
  return result
}

export type ProcessStatus = ProcessRecord & { running: boolean; health: string }

/** Every recorded process with whether it runs and what its health check answers. */
export async function clusterStatus(
  stateDir: string,
): Promise<{ state: ClusterState | undefined; processes: ProcessStatus[] }> {
  const state = readState(stateDir)
  if (!state) return { state, processes: [] }
  const processes = await Promise.all(
    state.processes.map(async (p): Promise<ProcessStatus> => {
      const running = isOurs(p)
      if (!running) return { ...p, running, health: 'not running' }
      return { ...p, running, health: await healthOf(p, state) }
    }),
  )
  return { state, processes }
}

async function healthOf(p: ProcessRecord, state: ClusterState): Promise<string> {
  switch (p.kind) {
    case 'function':
    case 'worker':
      return (await ready(p.port)) ? 'ready' : 'not ready'
    case 'redis':
      return (await redisAnswers(p.port)) ? 'answers PING' : 'no answer'
    case 'mariadb': {
      const server = serverOf(state.stateDir, p.name === 'mariadb-primary' ? 'primary' : 'replica', p.port)
      try {
        const connection = await rootConnection(server)
        try {
          if (server.role === 'primary') return 'answers'
          const [rows] = (await connection.query('SHOW SLAVE STATUS')) as unknown as [
            Array<{
              Slave_IO_Running: string
              Slave_SQL_Running: string
              Seconds_Behind_Master: number | null
            }>,
          ]
          const status = rows[0]
          return status?.Slave_IO_Running === 'Yes' && status.Slave_SQL_Running === 'Yes'
            ? `replicating (${status.Seconds_Behind_Master ?? '?'} s behind)`
            : 'NOT replicating'
        } finally {
          await connection.end()
        }
      } catch {
        return 'no answer'
      }
    }
    case 'nginx': {
      const [http, https] = await Promise.all([listening(state.httpPort), listening(state.httpsPort)])
      return http && https ? `listening on ${state.httpPort} and ${state.httpsPort}` : 'not listening'
    }
  }
}

/**
 * A rolling restart of every instance of `entries` (default: all): each gets a replacement on a new
 * port; once it is ready, nginx is reloaded to send traffic there only, and once nginx's previous
 * workers have finished their requests, the old instance gets SIGTERM. No request meets a stopping
 * process, so none fails. Workers have no nginx step: the new one runs before the old one stops.
 */
export async function rollingRestart(
  stateDir: string,
  entries: string[] = [],
  say: (line: string) => void = () => undefined,
): Promise<void> {
  const state = readState(stateDir)
  if (!state || runningProcesses(stateDir).length === 0)
    throw new ClusterError(`No cluster runs in ${stateDir}.`)
  const model = await loadModel()
  const known = new Set(Object.keys(state.instances))
  const unknown = entries.filter((entry) => !known.has(entry))
  if (unknown.length > 0) throw new ClusterError(`No function or worker named ${unknown.join(', ')}`)
  const secrets = loadSecrets(stateDir)
  const nginx = state.processes.find((p) => p.kind === 'nginx')
  const targets = state.processes.filter(
    (p) =>
      (p.kind === 'function' || p.kind === 'worker') &&
      (entries.length === 0 || entries.includes(p.entry ?? '')),
  )
  for (const old of targets) {
    const index = Number(old.name.split('#')[1])
    say(`${old.name}: starting its replacement`)
    const replacement = await startInstance(
      state,
      secrets,
      old.entry ?? '',
      old.kind as 'function' | 'worker',
      index,
    )
    state.processes = state.processes.map((p) => (p === old ? replacement : p))
    writeState(state)
    if (old.kind === 'function' && nginx) {
      const previousWorkers = childrenOf(nginx.pid)
      writeNginxConfig(model, state)
      process.kill(nginx.pid, 'SIGHUP')
      // nginx's old workers exit once their requests (and connections to the old instance) are done.
      await waitUntil('nginx to reload', () => previousWorkers.every((pid) => !isAlive(pid)), {
        timeoutMs: 60_000,
      })
    }
    say(`${old.name}: stopping the old instance (pid ${old.pid})`)
    await terminate(old)
  }
}

/** Deletes the state folder (data, logs, certificate, secrets) of a cluster that no longer runs. */
export function removeState(stateDir: string) {
  if (runningProcesses(stateDir).length > 0) throw new ClusterError(`The cluster in ${stateDir} still runs.`)
  rmSync(stateDir, { recursive: true, force: true })
}
