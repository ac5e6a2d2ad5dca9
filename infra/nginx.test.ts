import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  DOCS_ROOT_IN_NGINX_IMAGE,
  FUNCTION_PORT,
  type InfraModel,
  loadModel,
  renderDocs,
  renderNginx,
  renderSingleNginx,
} from '../scripts/gen-infra'
import { MAX_BODY_BYTES } from '../shared/http/app'
import type { RouteDef } from '../shared/http/route'
import { expectProblemShape, type TestResponse } from '../shared/testing/harness'

/**
 * The committed nginx configurations, run for real: every upstream is pointed at a local echo server
 * that says which upstream it is, so each route is proven to reach its own function.
 */

const NGINX = ['nginx', '/usr/sbin/nginx'].find(
  (bin) => spawnSync(bin, ['-v'], { stdio: 'ignore' }).status === 0,
)
const SKIP = NGINX ? '' : ' (skipped: nginx is not installed; apt-get install -y nginx)'
const CONF_DIR = new URL('./nginx/', import.meta.url).pathname

type Echo = { upstream: string; method: string; url: string; bytes: number; headers: Record<string, string> }

function echoServer(upstream: string): Promise<{ port: number; server: Server }> {
  const server = createServer((req, res) => {
    let bytes = 0
    req.on('data', (chunk: Buffer) => {
      bytes += chunk.length
    })
    req.on('end', () => {
      const body: Echo = {
        upstream,
        method: req.method ?? '',
        url: req.url ?? '',
        bytes,
        headers: req.headers as Record<string, string>,
      }
      res.writeHead(200, {
        'Content-Type': 'application/json',
        'X-Request-Id': String(req.headers['x-request-id'] ?? ''),
      })
      res.end(JSON.stringify(body))
    })
  })
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => resolve({ port: (server.address() as AddressInfo).port, server }))
  })
}

const freePort = async () => {
  const { port, server } = await echoServer('probe')
  await new Promise((resolve) => server.close(resolve))
  return port
}

/**
 * The committed file made runnable here: listen on a free local port, upstream hosts (compose service
 * names, unknown to this machine's DNS) replaced by 127.0.0.1 and a port of the test's choosing, and
 * temporary files kept in the test's own folder.
 */
function localConfig(conf: string, listenPort: number, prefix: string, portOf: (host: string) => number) {
  const temp = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']
    .map((kind) => `    ${kind}_temp_path ${join(prefix, kind)};`)
    .join('\n')
  return conf
    .replace('listen 80 default_server;', `listen 127.0.0.1:${listenPort} default_server;`)
    .replace(/server ([A-Za-z0-9.-]+):(\d+) /g, (_, host: string) => `server 127.0.0.1:${portOf(host)} `)
    .replace('http {\n', `http {\n${temp}\n`)
    .replaceAll('/var/log/nginx/', `${join(prefix, 'logs')}/`)
    .replaceAll(`root ${DOCS_ROOT_IN_NGINX_IMAGE};`, `root ${join(CONF_DIR, 'docs')};`)
}

type Nginx = { url: string; process: ChildProcess; output: () => string; stop(): Promise<void> }

async function startNginx(conf: string, portOf: (host: string) => number): Promise<Nginx> {
  const prefix = await mkdtemp(join(tmpdir(), 'commerce-nginx-'))
  await chmod(prefix, 0o755)
  for (const kind of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi', 'logs']) {
    await mkdir(join(prefix, kind), { mode: 0o777 })
    await chmod(join(prefix, kind), 0o777)
  }
  const port = await freePort()
  const file = join(prefix, 'nginx.conf')
  await writeFile(file, localConfig(conf, port, prefix, portOf))
  const args = ['-c', file, '-p', prefix, '-e', join(prefix, 'logs', 'error.log')]
  const check = spawnSync(NGINX as string, [...args, '-t'], { encoding: 'utf8' })
  if (check.status !== 0) {
    await rm(prefix, { recursive: true, force: true })
    throw new Error(`nginx -t failed:\n${check.stderr}`)
  }
  let output = ''
  const process = spawn(NGINX as string, [...args, '-g', `daemon off; pid ${join(prefix, 'nginx.pid')};`], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  process.stdout?.on('data', (chunk) => {
    output += chunk
  })
  process.stderr?.on('data', (chunk) => {
    output += chunk
  })
  const url = `http://127.0.0.1:${port}`
  for (let attempt = 0; ; attempt++) {
    if (process.exitCode !== null) throw new Error(`nginx exited:\n${output}`)
    const live = await fetch(`${url}/health/live`).catch(() => undefined)
    if (live?.ok) break
    if (attempt > 100) throw new Error(`nginx did not answer:\n${output}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  return {
    url,
    process,
    output: () => output,
    async stop() {
      if (process.exitCode === null) {
        process.kill('SIGTERM')
        await once(process, 'exit')
      }
      await rm(prefix, { recursive: true, force: true })
    },
  }
}

async function request(url: string, init: RequestInit = {}): Promise<TestResponse & { echo?: Echo }> {
  const res = await fetch(url, init)
  const text = await res.text()
  let body: unknown = text
  try {
    body = text === '' ? undefined : JSON.parse(text)
  } catch {
    // not JSON
  }
  const echo = res.headers.get('Content-Type') === 'application/json' ? (body as Echo) : undefined
  return { status: res.status, headers: res.headers, body, text, ...(echo?.upstream ? { echo } : {}) }
}

/** A concrete path for a route pattern: every parameter becomes `value`. */
const samplePath = (path: string, value = '123') =>
  path
    .split('/')
    .map((segment) => (segment.startsWith(':') ? value : segment))
    .join('/')

describe('infra/nginx/nginx.conf (one container per function)', () => {
  let model: InfraModel
  let nginx: Nginx
  const echoes = new Map<string, { port: number; server: Server }>()

  beforeAll(async () => {
    model = await loadModel()
    if (!NGINX) return
    for (const fn of model.functions) echoes.set(fn.name, await echoServer(fn.name))
    const conf = await readFile(join(CONF_DIR, 'nginx.conf'), 'utf8')
    nginx = await startNginx(conf, (host) => {
      const echo = echoes.get(host)
      if (!echo) throw new Error(`upstream host ${host} is not a function`)
      return echo.port
    })
  })

  afterAll(async () => {
    await nginx?.stop()
    await Promise.all([...echoes.values()].map(({ server }) => new Promise((r) => server.close(r))))
  })

  it('is what scripts/gen-infra.ts renders from functions/ (run `npm run gen:infra`)', async () => {
    const committed = await readFile(join(CONF_DIR, 'nginx.conf'), 'utf8')
    expect(committed).toBe(renderNginx(model))
  })

  it('has one upstream per function, named like its compose service, on the function port', async () => {
    const committed = await readFile(join(CONF_DIR, 'nginx.conf'), 'utf8')
    const upstreams = [...committed.matchAll(/upstream ([\w-]+) \{[^}]*?server ([\w.-]+):(\d+) /g)].map(
      ([, name, host, port]) => ({ name, host, port: Number(port) }),
    )
    expect(upstreams).toEqual(
      model.functions.map((fn) => ({ name: fn.name, host: fn.name, port: FUNCTION_PORT })),
    )
  })

  it.skipIf(!NGINX)(`routes every function's method and path to its own upstream${SKIP}`, async () => {
    for (const fn of model.functions) {
      const path = samplePath(fn.route.path)
      const res = await request(`${nginx.url}${path}?limit=5`, { method: fn.route.method })
      expect({
        route: `${fn.route.method} ${path}`,
        status: res.status,
        upstream: res.echo?.upstream,
      }).toEqual({ route: `${fn.route.method} ${path}`, status: 200, upstream: fn.name })
      // The original URI, query included, reaches the function unchanged.
      expect(res.echo?.url).toBe(`${path}?limit=5`)
    }
  })

  it('ships the API reference of every function, as gen:infra renders it (run `npm run gen:infra`)', async () => {
    const rendered = renderDocs(model)
    for (const file of ['openapi.json', 'docs.html'] as const) {
      expect(await readFile(join(CONF_DIR, 'docs', file), 'utf8')).toBe(rendered[file])
    }
  })

  it.skipIf(!NGINX)(`serves /docs and /openapi.json for every function itself${SKIP}`, async () => {
    const openapi = await request(`${nginx.url}/openapi.json`)
    expect(openapi.status).toBe(200)
    expect(openapi.headers.get('Content-Type')).toBe('application/json; charset=utf-8')
    const paths = (openapi.body as { paths: Record<string, Record<string, unknown>> }).paths
    for (const fn of model.functions) {
      const path = fn.route.path.replace(/:(\w+)/g, '{$1}')
      expect(paths[path]?.[fn.route.method.toLowerCase()], `${fn.route.method} ${path}`).toBeDefined()
    }
    const docs = await request(`${nginx.url}/docs`)
    expect(docs.status).toBe(200)
    expect(docs.headers.get('Content-Type')).toBe('text/html; charset=utf-8')
    // Every problem's `type` links to an anchor of this page.
    expect(docs.text).toContain('id="error-VALIDATION_FAILED"')
    expect(docs.echo).toBeUndefined()
    const post = await request(`${nginx.url}/docs`, { method: 'POST' })
    expectProblemShape(post, 405, 'METHOD_NOT_ALLOWED')
  })

  it.skipIf(!NGINX)(`lets the function itself reject a malformed id (400, not 404)${SKIP}`, async () => {
    const withParams = model.functions.filter((fn) => fn.route.path.includes('/:'))
    for (const fn of withParams) {
      const res = await request(`${nginx.url}${samplePath(fn.route.path, 'abc')}`, {
        method: fn.route.method,
      })
      expect(res.echo?.upstream).toBe(fn.name)
    }
  })

  it.skipIf(!NGINX)(`answers HEAD on GET routes through the function${SKIP}`, async () => {
    const fn = model.functions.find((f) => f.route.method === 'GET')
    if (!fn) return
    const res = await fetch(`${nginx.url}${samplePath(fn.route.path)}`, { method: 'HEAD' })
    expect(res.status).toBe(200)
  })

  it.skipIf(!NGINX)(
    `answers 405 problem JSON with Allow for a method the path does not serve${SKIP}`,
    async () => {
      for (const fn of model.functions) {
        const method = fn.route.method === 'GET' ? 'DELETE' : 'GET'
        const res = await request(`${nginx.url}${samplePath(fn.route.path)}`, { method })
        expectProblemShape(res, 405, 'METHOD_NOT_ALLOWED')
        expect(res.headers.get('Allow')).toContain(fn.route.method)
      }
    },
  )

  it.skipIf(!NGINX)(
    `answers 404 problem JSON for unknown routes, /metrics and /health/*${SKIP}`,
    async () => {
      for (const path of ['/v1/nothing-here', '/metrics', '/health/ready', '/', '/v1/products/1/x']) {
        const res = await request(`${nginx.url}${path}`)
        const problem = expectProblemShape(res, 404, 'NOT_FOUND')
        expect(problem.instance).toBe(path)
      }
      // A path that would need escaping in JSON is left out of the body instead of breaking it.
      const odd = await request(`${nginx.url}/v1/%22quoted%22`)
      expect(expectProblemShape(odd, 404, 'NOT_FOUND').instance).toBe('')
    },
  )

  it.skipIf(!NGINX)(`passes a valid X-Request-Id through and replaces an invalid one${SKIP}`, async () => {
    const fn = model.functions[0]
    if (!fn) return
    const url = `${nginx.url}${samplePath(fn.route.path)}`
    const kept = await request(url, { method: fn.route.method, headers: { 'X-Request-Id': 'client-id_1.2' } })
    expect(kept.echo?.headers['x-request-id']).toBe('client-id_1.2')
    expect(kept.headers.get('X-Request-Id')).toBe('client-id_1.2')

    const replaced = await request(url, { method: fn.route.method, headers: { 'X-Request-Id': 'bad id!' } })
    expect(replaced.echo?.headers['x-request-id']).toMatch(/^[0-9a-f]{32}$/)
    expect(replaced.headers.get('X-Request-Id')).toBe(replaced.echo?.headers['x-request-id'])

    const generated = await request(url, { method: fn.route.method })
    expect(generated.headers.get('X-Request-Id')).toMatch(/^[0-9a-f]{32}$/)
  })

  it.skipIf(!NGINX)(`sets X-Real-IP and appends to X-Forwarded-For${SKIP}`, async () => {
    const fn = model.functions[0]
    if (!fn) return
    const res = await request(`${nginx.url}${samplePath(fn.route.path)}`, {
      method: fn.route.method,
      headers: { 'X-Forwarded-For': '203.0.113.9' },
    })
    expect(res.echo?.headers['x-real-ip']).toBe('127.0.0.1')
    expect(res.echo?.headers['x-forwarded-for']).toBe('203.0.113.9, 127.0.0.1')
  })

  it.skipIf(!NGINX)(
    `accepts a ${MAX_BODY_BYTES}-byte body and answers 413 problem JSON above it${SKIP}`,
    async () => {
      const fn = model.functions.find((f) => f.route.method !== 'GET')
      if (!fn) return
      const url = `${nginx.url}${samplePath(fn.route.path)}`
      const headers = { 'Content-Type': 'application/json' }
      const fits = await request(url, { method: fn.route.method, headers, body: 'a'.repeat(MAX_BODY_BYTES) })
      expect(fits.echo?.bytes).toBe(MAX_BODY_BYTES)
      const tooBig = await request(url, {
        method: fn.route.method,
        headers,
        body: 'a'.repeat(MAX_BODY_BYTES + 1),
      })
      expectProblemShape(tooBig, 413, 'PAYLOAD_TOO_LARGE')
    },
  )

  it.skipIf(!NGINX)(`answers 503 problem JSON with Retry-After when a function is down${SKIP}`, async () => {
    const fn = model.functions[0]
    const echo = fn && echoes.get(fn.name)
    if (!fn || !echo) return
    await new Promise((resolve) => echo.server.close(resolve))
    echo.server.closeAllConnections()
    const res = await request(`${nginx.url}${samplePath(fn.route.path)}`, { method: fn.route.method })
    expectProblemShape(res, 503, 'SERVICE_UNAVAILABLE')
    expect(res.headers.get('Retry-After')).toBe('1')
  })
})

describe('renderNginx for shapes no function has yet', () => {
  // Several methods on one path, each its own function, and a static segment beside a parameter.
  const route = (method: string, path: string) => ({ method, path }) as unknown as RouteDef
  const model: InfraModel = {
    functions: [
      { name: 'thing-get', route: route('GET', '/v1/things/:thingId') },
      { name: 'thing-update', route: route('PATCH', '/v1/things/:thingId') },
      { name: 'thing-popular', route: route('GET', '/v1/things/popular') },
    ],
    workers: [],
  }
  let nginx: Nginx
  const echoes = new Map<string, { port: number; server: Server }>()

  beforeAll(async () => {
    if (!NGINX) return
    for (const fn of model.functions) echoes.set(fn.name, await echoServer(fn.name))
    nginx = await startNginx(renderNginx(model), (host) => echoes.get(host)?.port ?? 1)
  })

  afterAll(async () => {
    await nginx?.stop()
    await Promise.all([...echoes.values()].map(({ server }) => new Promise((r) => server.close(r))))
  })

  it('refuses two functions for one method and path, whatever their parameters are called', () => {
    for (const path of ['/v1/things/:thingId', '/v1/things/:id']) {
      const twin = { name: 'thing-get-2', route: route('GET', path) }
      expect(() => renderNginx({ functions: [...model.functions, twin], workers: [] })).toThrow(
        /served by both thing-get/,
      )
    }
  })

  it.skipIf(!NGINX)(`sends each method of a shared path to its own function${SKIP}`, async () => {
    const get = await request(`${nginx.url}/v1/things/7`)
    expect(get.echo?.upstream).toBe('thing-get')
    const patch = await request(`${nginx.url}/v1/things/7`, { method: 'PATCH', body: '{}' })
    expect(patch.echo?.upstream).toBe('thing-update')
    const popular = await request(`${nginx.url}/v1/things/popular`)
    expect(popular.echo?.upstream).toBe('thing-popular')
    const del = await request(`${nginx.url}/v1/things/7`, { method: 'DELETE' })
    expectProblemShape(del, 405, 'METHOD_NOT_ALLOWED')
    expect(del.headers.get('Allow')).toBe('GET, HEAD, PATCH')
  })
})

describe('infra/nginx/single.conf (npm start behind nginx)', () => {
  let nginx: Nginx
  let app: { port: number; server: Server }

  beforeAll(async () => {
    if (!NGINX) return
    app = await echoServer('app')
    const conf = await readFile(join(CONF_DIR, 'single.conf'), 'utf8')
    nginx = await startNginx(conf, (host) => {
      if (host !== '127.0.0.1') throw new Error(`unexpected upstream host ${host}`)
      return app.port
    })
  })

  afterAll(async () => {
    await nginx?.stop()
    if (app) await new Promise((resolve) => app.server.close(resolve))
  })

  it('is what scripts/gen-infra.ts renders (run `npm run gen:infra`)', async () => {
    expect(await readFile(join(CONF_DIR, 'single.conf'), 'utf8')).toBe(renderSingleNginx())
  })

  it('sends everything to the one process on port 8080', async () => {
    expect(await readFile(join(CONF_DIR, 'single.conf'), 'utf8')).toContain(
      `server 127.0.0.1:${FUNCTION_PORT} `,
    )
  })

  it.skipIf(!NGINX)(`proxies every path but /metrics to the app${SKIP}`, async () => {
    for (const path of ['/v1/products/1', '/v1/anything?x=1', '/docs', '/openapi.json', '/health/ready']) {
      const res = await request(`${nginx.url}${path}`, { method: 'GET' })
      expect({ path, upstream: res.echo?.upstream, url: res.echo?.url }).toEqual({
        path,
        upstream: 'app',
        url: path,
      })
    }
    const post = await request(`${nginx.url}/v1/orders`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-Request-Id': 'abc' },
      body: '{}',
    })
    expect(post.echo?.headers['x-request-id']).toBe('abc')
    expectProblemShape(await request(`${nginx.url}/metrics`), 404, 'NOT_FOUND')
  })
})
