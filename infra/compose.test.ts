import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import packageJson from '../package.json' with { type: 'json' }
import { ConnectionBudgetError } from '../scripts/connection-budget'
import {
  FUNCTION_PORT,
  IMAGE,
  type InfraModel,
  instancesOf,
  loadModel,
  MARIADB_LIMITS,
  POOLS,
  renderCompose,
  renderConnectionsCnf,
  topologyBudget,
} from '../scripts/gen-infra'
import { renderProxySqlCnf } from '../scripts/infra/proxysql'
import { ENV_VARS } from '../shared/config'

/**
 * docker-compose.yml, the Dockerfile and the nginx configuration agree with each other and with the
 * code: every function has its service, services only set variables the app reads, nginx upstreams
 * are services on the port they listen on, and every file they mount or copy exists.
 */

const ROOT = new URL('..', import.meta.url).pathname

type Service = {
  image?: string
  build?: unknown
  command?: string[]
  environment?: Record<string, string>
  expose?: string[]
  ports?: string[]
  volumes?: string[]
  healthcheck?: { test: string[] }
  depends_on?: Record<string, { condition: string }>
  deploy?: { replicas?: number }
  profiles?: string[]
}

let model: InfraModel
let text: string
let services: Record<string, Service>

beforeAll(async () => {
  model = await loadModel()
  text = await readFile(join(ROOT, 'docker-compose.yml'), 'utf8')
  services = (parse(text, { merge: true }) as { services: Record<string, Service> }).services
})

const appServices = () => Object.entries(services).filter(([, service]) => service.image === IMAGE)
const entries = () => [...model.functions.map((fn) => fn.name), ...model.workers].sort()

describe('docker-compose.yml', () => {
  it('is what scripts/gen-infra.ts renders from functions/ (run `npm run gen:infra`)', () => {
    expect(text).toBe(renderCompose(model))
  })

  it('has one service per function and worker, running the image with its name, and no other', () => {
    for (const name of entries()) {
      expect(services[name], `no service for functions/${name}`).toBeDefined()
      expect(services[name]).toMatchObject({ image: IMAGE, command: [name] })
    }
    const appNames = appServices()
      .map(([name]) => name)
      .filter((name) => name !== 'migrate')
    expect(appNames.sort()).toEqual(entries())
  })

  it('only sets environment variables that shared/config.ts reads', () => {
    for (const [name, service] of appServices()) {
      const unknown = Object.keys(service.environment ?? {}).filter((key) => !ENV_VARS.includes(key))
      expect({ service: name, unknown }).toEqual({ service: name, unknown: [] })
    }
  })

  it('runs functions in production mode on the port nginx and Prometheus use', () => {
    for (const [name, service] of appServices()) {
      expect({ name, env: service.environment }).toMatchObject({
        name,
        env: { NODE_ENV: 'production', PORT: String(FUNCTION_PORT) },
      })
      if (name !== 'migrate') expect(service.expose).toEqual([String(FUNCTION_PORT)])
    }
  })

  it('points every nginx upstream at a function service on the port it listens on', async () => {
    const conf = await readFile(join(ROOT, 'infra', 'nginx', 'nginx.conf'), 'utf8')
    const servers = [...conf.matchAll(/^\s*server ([\w.-]+):(\d+) /gm)].map(([, host, port]) => ({
      host,
      port,
    }))
    expect(servers.map((s) => s.host).sort()).toEqual(model.functions.map((fn) => fn.name).sort())
    for (const { host, port } of servers) {
      const service = services[host as string]
      expect(service, `nginx upstream ${host} has no compose service`).toBeDefined()
      expect(service?.environment?.PORT).toBe(port)
      expect(service?.expose).toContain(port)
    }
    expect(services.nginx?.volumes).toContain('./infra/nginx/nginx.conf:/etc/nginx/nginx.conf:ro')
    expect(services.nginx?.ports).toEqual([expect.stringMatching(/^\$\{HTTP_PORT:-80\}:80$/)])
    // nginx resolves its upstreams at start: every function must be up first.
    expect(Object.keys(services.nginx?.depends_on ?? {}).sort()).toEqual(model.functions.map((fn) => fn.name))
  })

  it('mounts only files and folders that exist in the repository', () => {
    const mounts = Object.entries(services).flatMap(([name, service]) =>
      (service.volumes ?? [])
        .filter((v) => v.startsWith('./'))
        .map((v) => ({ name, source: v.split(':')[0] })),
    )
    expect(mounts.length).toBeGreaterThan(5)
    for (const { name, source } of mounts) {
      expect(existsSync(join(ROOT, source as string)), `${name} mounts missing ${source}`).toBe(true)
    }
  })

  it('starts things in order: databases healthy, migrations done, then functions', () => {
    for (const [name, service] of Object.entries(services)) {
      for (const [target, { condition }] of Object.entries(service.depends_on ?? {})) {
        expect(services[target], `${name} depends on unknown ${target}`).toBeDefined()
        if (condition === 'service_healthy') {
          expect(
            services[target]?.healthcheck,
            `${name} waits for ${target}, which has no healthcheck`,
          ).toBeDefined()
        }
      }
    }
    for (const name of entries()) {
      expect(services[name]?.depends_on?.migrate).toEqual({ condition: 'service_completed_successfully' })
      expect(services[name]?.healthcheck?.test).toEqual(['CMD', 'node', '/app/healthcheck.mjs'])
    }
    expect(services.migrate).toMatchObject({
      command: ['migrate'],
      depends_on: { 'mysql-primary': { condition: 'service_healthy' } },
    })
  })

  it('runs one Redis with noeviction (BullMQ requires it), no Redis replica, and MySQL with a replica', async () => {
    const redisConf = await readFile(join(ROOT, 'infra', 'redis', 'redis.conf'), 'utf8')
    expect(redisConf).toMatch(/^maxmemory-policy noeviction$/m)
    expect(services.redis?.command?.[1]).toBe('/usr/local/etc/redis/redis.conf')
    expect(services.redis?.volumes).toContain('./infra/redis/redis.conf:/usr/local/etc/redis/redis.conf:ro')
    // Nothing can read caches, locks or coupon state from an asynchronous replica (docs/operations.md).
    expect(Object.keys(services).filter((name) => name.startsWith('redis'))).toEqual(['redis'])
    expect(services['mysql-replica']?.environment?.MARIADB_MASTER_HOST).toBe('mysql-primary')
    // Compose's variables: the primary and the replica unless the proxy is chosen (docs/scaling.md).
    expect(services.migrate?.environment?.DATABASE_URL).toMatch(/@\$\{DATABASE_HOST:-mysql-primary\}:/)
    expect(services.migrate?.environment?.DATABASE_REPLICA_URL).toMatch(
      /@\$\{DATABASE_REPLICA_HOST:-mysql-replica\}:/,
    )
  })

  it('runs each function at its instance count, with the pools the connection budget counts', () => {
    const instances = instancesOf(model)
    for (const name of entries()) {
      const replicas = services[name]?.deploy?.replicas ?? 1
      expect({ name, replicas }).toEqual({ name, replicas: instances.get(name) })
      expect(services[name]?.environment).toMatchObject({
        DATABASE_POOL_SIZE: String(POOLS.poolSize),
        DATABASE_REPLICA_POOL_SIZE: String(POOLS.replicaPoolSize),
      })
    }
  })

  it("gives both MariaDB servers the budget's max_connections (infra/mysql/connections.cnf)", async () => {
    const cnf = await readFile(join(ROOT, 'infra', 'mysql', 'connections.cnf'), 'utf8')
    const budget = topologyBudget(model)
    expect(cnf).toBe(renderConnectionsCnf(budget, 'the instances in docker-compose.yml'))
    expect(cnf).toContain(`max_connections = ${budget.maxConnections}`)
    // Every process kind with every pool full fits, with the headroom left over.
    const processes = entries().reduce((sum, name) => sum + (services[name]?.deploy?.replicas ?? 1), 0)
    expect(budget.primary).toBe(processes * POOLS.poolSize)
    expect(budget.maxConnections).toBe(budget.primary + MARIADB_LIMITS.headroom)
    for (const name of ['mysql-primary', 'mysql-replica']) {
      expect(services[name]?.volumes).toContain(
        './infra/mysql/connections.cnf:/etc/mysql/conf.d/connections.cnf:ro',
      )
    }
    expect(await readFile(join(ROOT, 'infra', 'mysql', 'server.cnf'), 'utf8')).not.toMatch(
      /^max_connections/m,
    )
  })

  it('refuses to generate a topology over the connection budget', () => {
    expect(() => topologyBudget(model, { 'order-create': 80 })).toThrow(ConnectionBudgetError)
    expect(() => topologyBudget(model, { 'order-create': 80 })).toThrow(/Largest: order-create 80 × 5 = 400/)
    expect(() => topologyBudget(model, { 'no-such-function': 2 })).toThrow(/no function or worker named/)
  })

  it('offers the connection proxy as an opt-in profile in front of both servers', async () => {
    const proxy = services['mysql-proxy']
    expect(proxy?.profiles).toEqual(['proxy'])
    expect(proxy?.volumes).toContain('./infra/mysql/proxysql.cnf:/etc/proxysql.cnf.in:ro')
    const cnf = await readFile(join(ROOT, 'infra', 'mysql', 'proxysql.cnf'), 'utf8')
    // The same rendering as the Kubernetes proxy's ConfigMap (infra/k8s.test.ts).
    expect(cnf).toBe(renderProxySqlCnf())
    expect(cnf).toContain('address="mysql-primary", port=3306, hostgroup=10')
    expect(cnf).toContain('address="mysql-replica", port=3306, hostgroup=20')
    // Passwords are placeholders filled from the environment at start, never committed.
    expect(cnf).toContain('password="@MYSQL_PASSWORD@"')
    expect(proxy?.environment?.MYSQL_PASSWORD).toMatch(/^\$\{MYSQL_PASSWORD:-commerce-dev\}$/)
    // The proxy's backend connections fit in the budget the servers are given.
    const backends = [...cnf.matchAll(/hostgroup=\d+, max_connections=(\d+)/g)].map(([, n]) => Number(n))
    expect(Math.max(...backends) + MARIADB_LIMITS.headroom).toBeLessThanOrEqual(
      topologyBudget(model).maxConnections,
    )
  })

  it("refuses to start without a JWT_SECRET of the operator's own", () => {
    expect(services.migrate?.environment?.JWT_SECRET).toMatch(/^\$\{JWT_SECRET:\?/)
  })

  const compose = ['docker-compose', 'docker'].find((bin) => {
    const args = bin === 'docker' ? ['compose', 'version'] : ['version']
    return spawnSync(bin, args, { stdio: 'ignore' }).status === 0
  })
  const runCompose = (env: Record<string, string>) =>
    spawnSync(
      compose as string,
      [...(compose === 'docker' ? ['compose'] : []), '-f', 'docker-compose.yml', 'config', '-q'],
      { cwd: ROOT, encoding: 'utf8', env: { PATH: process.env.PATH, ...env } },
    )
  it.skipIf(!compose)(
    `is valid for docker compose itself${compose ? '' : ' (skipped: neither `docker compose` nor docker-compose is installed)'}`,
    () => {
      const ok = runCompose({ JWT_SECRET: 'x'.repeat(32) })
      expect(ok.status, ok.stderr).toBe(0)
      const missing = runCompose({})
      expect(missing.status).not.toBe(0)
      expect(missing.stderr).toContain('JWT_SECRET')
    },
  )
})

describe('Dockerfile and its entry point', () => {
  let dockerfile: string
  let dockerignore: string[]
  let app: string

  beforeAll(async () => {
    dockerfile = await readFile(join(ROOT, 'Dockerfile'), 'utf8')
    dockerignore = (await readFile(join(ROOT, '.dockerignore'), 'utf8'))
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => line !== '' && !line.startsWith('#'))
    // A fake image layout: /app/dist with one function, one worker and the migrate bundle.
    app = await mkdtemp(join(tmpdir(), 'commerce-image-'))
    for (const dir of ['dist/functions/hello', 'dist/migrate'])
      await mkdir(join(app, dir), { recursive: true })
    await writeFile(join(app, 'dist/functions/hello/index.mjs'), "console.log('hello ran')\n")
    await writeFile(join(app, 'dist/migrate/index.mjs'), "console.log('migrate ran')\n")
  })

  afterAll(async () => {
    if (app) await rm(app, { recursive: true, force: true })
  })

  it('copies only files that exist and that .dockerignore lets into the build context', () => {
    const sources = [...dockerfile.matchAll(/^COPY (?!--from)(?:--\S+ )*(.+) \S+$/gm)].flatMap(([, list]) =>
      (list as string).split(/\s+/),
    )
    expect(sources).toEqual(
      expect.arrayContaining(['package.json', 'package-lock.json', '.', 'infra/docker/entrypoint.sh']),
    )
    for (const source of sources.filter((s) => s !== '.')) {
      expect(existsSync(join(ROOT, source)), `COPY ${source}: missing`).toBe(true)
      const ignoredBy = dockerignore.find((pattern) => source === pattern || source.startsWith(`${pattern}/`))
      expect(ignoredBy, `COPY ${source} is excluded by .dockerignore`).toBeUndefined()
    }
    // What `npm run build` needs must reach the build stage.
    for (const needed of ['functions', 'shared', 'scripts', 'tsconfig.json', 'package.json']) {
      expect(dockerignore).not.toContain(needed)
    }
    expect(dockerignore).toEqual(expect.arrayContaining(['node_modules', 'dist', '.git']))
  })

  it('builds with npm ci && npm run build and runs as a non-root user from the bundles alone', () => {
    expect(dockerfile).toMatch(/^FROM node:20-slim AS build$/m)
    expect(dockerfile).toMatch(/^RUN npm ci\b/m)
    // npm ci refuses to run without the manifest of every workspace the lock file names.
    const npmCi = dockerfile.search(/^RUN npm ci\b/m)
    for (const workspace of (packageJson.workspaces ?? []) as string[]) {
      const copy = dockerfile.indexOf(`COPY ${workspace}/package.json ${workspace}/`)
      expect(copy, `${workspace}/package.json is copied before npm ci`).toBeGreaterThan(-1)
      expect(copy).toBeLessThan(npmCi)
    }
    expect(dockerfile).toMatch(/^RUN npm run build$/m)
    expect(dockerfile).toMatch(/^COPY --from=build \/src\/dist \.\/dist$/m)
    expect(dockerfile).toMatch(/^USER node$/m)
    expect(dockerfile).toContain('/app/healthcheck.mjs')
    const runtime = dockerfile.slice(dockerfile.indexOf(' AS runtime'))
    expect(runtime).not.toMatch(/node_modules|npm /)
  })

  const entrypoint = (...args: string[]) =>
    spawnSync('sh', [join(ROOT, 'infra', 'docker', 'entrypoint.sh'), ...args], {
      encoding: 'utf8',
      env: { PATH: process.env.PATH, APP_DIR: app },
    })

  it('starts the bundle named by the command, or migrate', async () => {
    await chmod(join(ROOT, 'infra', 'docker', 'entrypoint.sh'), 0o755)
    expect(entrypoint('hello')).toMatchObject({ status: 0, stdout: 'hello ran\n' })
    expect(entrypoint('migrate')).toMatchObject({ status: 0, stdout: 'migrate ran\n' })
  })

  it('refuses an unknown or malformed name and lists the known ones', () => {
    for (const args of [[], ['nope'], ['../hello'], ['Hello']]) {
      const run = entrypoint(...args)
      expect(run.status).toBe(64)
      expect(run.stderr).toContain('one of: migrate hello')
    }
  })
})
