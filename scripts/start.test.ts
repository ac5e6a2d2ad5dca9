import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import mysql from 'mysql2/promise'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { testConfig } from '../shared/testing/harness'

/**
 * `npm start` as a user runs it (tsx scripts/start.ts), in a database and a RabbitMQ vhost of its own so
 * that its relay and consumer never touch anyone else's queues: its process layout, a crashed HTTP worker
 * restarted, metrics of every process, and SIGTERM stopping everything with exit 0.
 */
const rabbitmqctl = spawnSync('rabbitmqctl', ['status'], { stdio: 'ignore' }).status === 0
const suffix = randomBytes(4).toString('hex')
const database = `commerce_test_start_${suffix}`
const vhost = `commerce-start-test-${suffix}`

const base = testConfig()
const urlWith = (url: string, path: string) => {
  const u = new URL(url)
  u.pathname = path
  return u.toString()
}

let proc: ChildProcess | undefined
let output = ''

const waitForOutput = async (pattern: RegExp, timeoutMs = 60_000): Promise<RegExpMatchArray> => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const match = pattern.exec(output)
    if (match) return match
    if (Date.now() > deadline) throw new Error(`npm start never printed ${pattern}; it printed:\n${output}`)
    if (proc?.exitCode !== null) throw new Error(`npm start exited (${proc?.exitCode}):\n${output}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

const cmdline = (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8')
  } catch {
    return ''
  }
}

/** Running, not a zombie waiting to be reaped by init after its parent exited. */
const alive = (pid: number) => {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'))
  } catch {
    return false
  }
}

describe.skipIf(!rabbitmqctl)('npm start (skipped: rabbitmqctl is needed for a vhost of its own)', () => {
  let url = ''
  let httpPids: number[] = []
  let workerPids: number[] = []
  let primaryPid = 0
  /** The primary's cluster children (tsx also runs an esbuild service beside them). */
  const childrenOfPrimary = () =>
    spawnSync('ps', ['-o', 'pid=', '--ppid', String(primaryPid)], { encoding: 'utf8' })
      .stdout.split('\n')
      .map((line) => Number(line.trim()))
      .filter((pid) => pid > 0 && cmdline(pid).includes('start-child'))

  beforeAll(async () => {
    execFileSync('rabbitmqctl', ['add_vhost', vhost], { stdio: 'ignore' })
    const user = decodeURIComponent(new URL(base.rabbitmqUrl).username || 'guest')
    execFileSync('rabbitmqctl', ['set_permissions', '-p', vhost, user, '.*', '.*', '.*'], { stdio: 'ignore' })
    proc = spawn(process.execPath, ['node_modules/tsx/dist/cli.mjs', 'scripts/start.ts'], {
      env: {
        ...process.env,
        PORT: '0',
        WEB_CONCURRENCY: '2',
        LOG_LEVEL: 'warn',
        DATABASE_URL: urlWith(base.databaseUrl, `/${database}`),
        REDIS_URL: base.redisUrl,
        RABBITMQ_URL: urlWith(base.rabbitmqUrl, `/${vhost}`),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    proc.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString()
    })
    proc.stderr?.on('data', (chunk: Buffer) => {
      output += chunk.toString()
    })
    url = (await waitForOutput(/Serving \d+ functions on (http:\/\/localhost:\d+)/))[1] as string
    const pids = await waitForOutput(/pids (\d+), (\d+); primary pid (\d+)/)
    httpPids = [Number(pids[1]), Number(pids[2])]
    primaryPid = Number(pids[3])
    await waitForOutput(/Tokens for the routes/)
    workerPids = [...output.matchAll(/^\s+(?:outbox-relay|stats-consumer)\s+pid (\d+)/gm)].map((m) =>
      Number(m[1]),
    )
  }, 120_000)

  afterAll(async () => {
    if (proc && proc.exitCode === null) {
      proc.kill('SIGKILL')
      for (const pid of [...httpPids, ...workerPids]) if (alive(pid)) process.kill(pid, 'SIGKILL')
    }
    spawnSync('rabbitmqctl', ['delete_vhost', vhost], { stdio: 'ignore' })
    const connection = await mysql.createConnection({ uri: urlWith(base.databaseUrl, '/') })
    await connection.query(`DROP DATABASE IF EXISTS \`${database}\``)
    await connection.end()
  })

  it('runs two HTTP workers and one process per worker folder, and serves the seeded catalogue', async () => {
    expect(httpPids.every(alive)).toBe(true)
    expect(workerPids).toHaveLength(2)
    expect(workerPids.every(alive)).toBe(true)
    const res = await fetch(`${url}/v1/products`)
    expect(res.status).toBe(200)
    expect(((await res.json()) as { items: unknown[] }).items.length).toBeGreaterThan(0)
  })

  it('answers GET /metrics with every process, added up by the primary', async () => {
    const text = await (await fetch(`${url}/metrics`)).text()
    for (const service of ['all-functions', 'outbox-relay', 'stats-consumer']) {
      expect(text).toContain(`process_resident_memory_bytes{service="${service}"}`)
    }
  })

  it('starts an HTTP worker again when one dies, and keeps serving meanwhile', async () => {
    const [victim] = httpPids as [number]
    process.kill(victim, 'SIGKILL')
    await waitForOutput(new RegExp(`HTTP worker \\(pid ${victim}\\) exited \\(SIGKILL\\); restarting`))
    // The other worker serves meanwhile.
    for (let i = 0; i < 20; i++) expect((await fetch(`${url}/v1/products/1`)).status).toBe(200)
    const again = Number((await waitForOutput(/HTTP worker restarted \(pid (\d+)\)/))[1])
    expect(alive(again)).toBe(true)
  })

  it('drains and stops every process on SIGTERM, and exits 0', async () => {
    const running = proc as ChildProcess
    const children = childrenOfPrimary().filter(alive)
    expect(children).toHaveLength(4)
    const exited = once(running, 'exit')
    process.kill(primaryPid, 'SIGTERM')
    await exited
    expect(alive(primaryPid)).toBe(false)
    expect(children.filter(alive)).toEqual([])
  })
})
