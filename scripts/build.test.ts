import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import { copyFile, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, parse } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { RuntimeDeps } from '../shared/runtime/deps'
import { TEST_ENV } from '../shared/testing/env'
import { createTestDeps, insertProduct } from '../shared/testing/harness'
import { freePort } from '../shared/testing/own-redis'
import { bundleFunction } from './build'

/** Every node_modules folder Node's resolver would look in from `dir` upwards. */
const reachableNodeModules = (dir: string) => {
  const found: string[] = []
  for (let at = dir; ; at = dirname(at)) {
    if (existsSync(join(at, 'node_modules'))) found.push(join(at, 'node_modules'))
    if (at === parse(at).root) return found
  }
}

let deps: RuntimeDeps
let buildDir: string
let runDir: string
let child: ChildProcess | undefined
let output = ''
let baseUrl: string

const exited = () => child?.exitCode !== null || child?.signalCode !== null

async function waitUntilReady(deadlineMs: number) {
  const until = Date.now() + deadlineMs
  while (Date.now() < until) {
    if (exited()) throw new Error(`the bundle exited during start-up (${child?.exitCode}):\n${output}`)
    try {
      const res = await fetch(`${baseUrl}/health/ready`)
      if (res.ok) return
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error(`the bundle was not ready within ${deadlineMs} ms:\n${output}`)
}

beforeAll(async () => {
  deps = await createTestDeps()
  buildDir = await mkdtemp(join(tmpdir(), 'commerce-build-'))
  runDir = await mkdtemp(join(tmpdir(), 'commerce-run-'))
  const { outfile } = await bundleFunction('product-get', buildDir)
  // Only the one file: the bundle must not need its source map, its siblings or any node_modules.
  await copyFile(outfile, join(runDir, 'index.mjs'))
  const port = await freePort()
  baseUrl = `http://127.0.0.1:${port}`
  child = spawn(process.execPath, ['index.mjs'], {
    cwd: runDir,
    // A clean environment: nothing of the test runner's (NODE_OPTIONS, loaders) may help the bundle.
    env: {
      PATH: process.env.PATH,
      PORT: String(port),
      DATABASE_URL: TEST_ENV.DATABASE_URL,
      REDIS_URL: TEST_ENV.REDIS_URL,
      NODE_ENV: 'test',
      LOG_LEVEL: 'silent',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  child.stdout?.on('data', (chunk) => {
    output += chunk
  })
  child.stderr?.on('data', (chunk) => {
    output += chunk
  })
  await waitUntilReady(15_000)
})

afterAll(async () => {
  if (child && !exited()) {
    child.kill('SIGKILL')
    await once(child, 'exit')
  }
  await Promise.all([
    buildDir && rm(buildDir, { recursive: true, force: true }),
    runDir && rm(runDir, { recursive: true, force: true }),
  ])
  await deps?.close()
})

describe('the product-get bundle', () => {
  it('runs from a folder with no node_modules anywhere above it', () => {
    expect(reachableNodeModules(runDir)).toEqual([])
  })

  it('serves GET /v1/products/{id} from MySQL with plain node', async () => {
    const id = await insertProduct(deps, {
      name: 'Bundled kettle',
      price: 12_345,
      stock: 3,
      description: 'esm',
    })
    const res = await fetch(`${baseUrl}/v1/products/${id}`)
    expect(res.status).toBe(200)
    expect(res.headers.get('X-Request-Id')).toBeTruthy()
    expect(await res.json()).toMatchObject({
      id,
      name: 'Bundled kettle',
      description: 'esm',
      price: 12_345,
      stock: 3,
    })
  })

  it('answers problem JSON for an unknown product', async () => {
    const res = await fetch(`${baseUrl}/v1/products/${Number.MAX_SAFE_INTEGER}`)
    expect(res.status).toBe(404)
    expect(res.headers.get('Content-Type')).toMatch(/^application\/problem\+json/)
    expect(await res.json()).toMatchObject({ code: 'PRODUCT_NOT_FOUND' })
  })

  it('exits 0 within 10 s of SIGTERM', async () => {
    const proc = child as ChildProcess
    const started = Date.now()
    const exit = once(proc, 'exit') as Promise<[number | null, NodeJS.Signals | null]>
    proc.kill('SIGTERM')
    const [code, signal] = await exit
    expect({ code, signal, output: code === 0 ? '' : output }).toEqual({ code: 0, signal: null, output: '' })
    expect(Date.now() - started).toBeLessThan(10_000)
  })
})

describe('the product-get bundle on SIGTERM with a request in flight', () => {
  it('finishes the request, then exits 0', async () => {
    // A Redis of this test's own that it can freeze: the bundle's cache read then hangs until its
    // command timeout (1 s) and falls back to MySQL, so the request is in flight when SIGTERM arrives.
    const redisPort = await freePort()
    const redis = spawn('redis-server', ['--port', String(redisPort), '--save', '', '--appendonly', 'no'], {
      stdio: 'ignore',
    })
    const port = await freePort()
    const bundle = spawn(process.execPath, ['index.mjs'], {
      cwd: runDir,
      env: {
        PATH: process.env.PATH,
        PORT: String(port),
        DATABASE_URL: TEST_ENV.DATABASE_URL,
        REDIS_URL: `redis://127.0.0.1:${redisPort}`,
        NODE_ENV: 'test',
        LOG_LEVEL: 'silent',
      },
      stdio: 'ignore',
    })
    try {
      const base = `http://127.0.0.1:${port}`
      for (let ready = false, tries = 0; !ready; tries++) {
        if (tries > 150) throw new Error('the second bundle did not become ready')
        ready = await fetch(`${base}/health/ready`).then(
          (r) => r.ok,
          () => false,
        )
        if (!ready) await new Promise((resolve) => setTimeout(resolve, 100))
      }
      const id = await insertProduct(deps, { name: 'In flight', stock: 2 })
      const exit = once(bundle, 'exit') as Promise<[number | null, NodeJS.Signals | null]>
      redis.kill('SIGSTOP')
      const inFlight = fetch(`${base}/v1/products/${id}`)
      await new Promise((resolve) => setTimeout(resolve, 200))
      const signalled = Date.now()
      bundle.kill('SIGTERM')
      const res = await inFlight
      redis.kill('SIGCONT')
      expect(res.status).toBe(200)
      expect(await res.json()).toMatchObject({ id, name: 'In flight', stock: 2 })
      const [code] = await exit
      expect(code).toBe(0)
      expect(Date.now() - signalled).toBeLessThan(10_000)
    } finally {
      redis.kill('SIGCONT')
      redis.kill('SIGKILL')
      if (bundle.exitCode === null && bundle.signalCode === null) bundle.kill('SIGKILL')
    }
  })
})
