import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import mysql from 'mysql2/promise'
import { createDatabase, type Db } from '../../shared/db/client'
import { freePort } from '../../shared/testing/own-redis'
import { createTcpProxy, type TcpProxy } from '../../shared/testing/tcp-proxy'
import {
  type Check,
  checkDurable,
  checkEvents,
  checkEveryRequestAnswered,
  checkNoServerErrors,
  checkReplays,
  checkSpecInvariants,
  committedEvents,
  committedOrders,
  outboxRows,
  type PendingEvent,
  pendingEvents,
} from './checks'
import { type Attempt, createClient, outcomeLabel } from './client'
import { type Dependency, type FaultRecord, faultPlan, runFaults } from './faults'
import { createWorld, finalReplays, PROFILES, randomSource, runVirtualClient } from './load'
import { createVhost, observeDataPlatform } from './observer'
import { startService } from './service'

export type ChaosOptions = {
  /** The short form (under 90 s) that `npm test` runs. */
  short: boolean
  seed: number
  /** Keep the run's database and log afterwards (for a look at what failed). */
  keep: boolean
  /** Where the real services are; the suite puts its proxies in front of them. */
  targets: { databaseUrl: string; redisUrl: string; rabbitmqUrl: string }
  print: (line: string) => void
}

export type ChaosResult = { ok: boolean; checks: Check[]; faults: FaultRecord[]; logFile: string }

/** How long after the last heal every committed event must have left the outbox and arrived. */
export const DRAIN_DEADLINE_MS = 30_000

type Observer = Awaited<ReturnType<typeof observeDataPlatform>>

/** Polls `condition` until it holds or the deadline passes; says which. */
async function waitUntil(deadline: number, condition: () => Promise<boolean>): Promise<boolean> {
  for (;;) {
    if (await condition()) return true
    if (Date.now() > deadline) return false
    await sleep(250)
  }
}

/** When every event committed up to `healedAt` had been published and had arrived (or which had not). */
async function watchBacklog(db: Db, observer: Observer, healedAt: number) {
  const total = (await committedEvents(db, healedAt)).length
  let pending: PendingEvent[] = []
  const done = await waitUntil(healedAt + DRAIN_DEADLINE_MS, async () => {
    pending = await pendingEvents(db, observer, healedAt)
    return pending.length === 0
  })
  return { at: done ? Date.now() : undefined, pending, total }
}

const TIMING = {
  short: { calmMs: 2_000, finalReplays: 250, finalReplayMs: 15_000 },
  full: { calmMs: 4_000, finalReplays: 1_500, finalReplayMs: 25_000 },
}

const withHostPort = (url: string, port: number) => {
  const u = new URL(url)
  u.hostname = '127.0.0.1'
  u.port = String(port)
  return u
}

const defaultPort = (url: string, fallback: number) => Number(new URL(url).port || fallback)

async function dropDatabase(serverUrl: string, name: string) {
  const u = new URL(serverUrl)
  u.pathname = '/'
  const connection = await mysql.createConnection({ uri: u.toString() })
  try {
    await connection.query(`DROP DATABASE IF EXISTS \`${name}\``)
  } finally {
    await connection.end()
  }
}

async function deleteRedisKeys(url: string, prefix: string) {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 })
  redis.on('error', () => undefined)
  try {
    await redis.connect()
    let cursor = '0'
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000)
      cursor = next
      if (keys.length > 0) await redis.unlink(...keys)
    } while (cursor !== '0')
  } finally {
    redis.disconnect()
  }
}

/**
 * The fault suite: `npm start` behind TCP proxies to MySQL, Redis and RabbitMQ, a mixed load with
 * deliberate replays while each dependency is cut, delayed and blackholed in turn, then the checks.
 */
export async function runChaos(options: ChaosOptions): Promise<ChaosResult> {
  const { print, targets } = options
  const profile = PROFILES[options.short ? 'short' : 'full']
  const timing = TIMING[options.short ? 'short' : 'full']
  const random = randomSource(options.seed)
  const runId = randomBytes(4).toString('hex')
  const database = `commerce_chaos_${runId}`
  const workDir = mkdtempSync(join(tmpdir(), 'chaos-'))
  const logFile = join(workDir, 'service.log')
  const jwtSecret = randomBytes(32).toString('hex')
  print(
    `chaos run ${runId} (${options.short ? 'short' : 'full'}, seed ${options.seed}): database ${database}, service log ${logFile}`,
  )

  const proxies: Record<Dependency, TcpProxy> = {
    mysql: await createTcpProxy(
      defaultPort(targets.databaseUrl, 3306),
      new URL(targets.databaseUrl).hostname,
    ),
    redis: await createTcpProxy(defaultPort(targets.redisUrl, 6379), new URL(targets.redisUrl).hostname),
    rabbitmq: await createTcpProxy(
      defaultPort(targets.rabbitmqUrl, 5672),
      new URL(targets.rabbitmqUrl).hostname,
    ),
  }
  const serviceDatabaseUrl = withHostPort(targets.databaseUrl, proxies.mysql.port)
  serviceDatabaseUrl.pathname = `/${database}`
  const directDatabaseUrl = new URL(targets.databaseUrl)
  directDatabaseUrl.pathname = `/${database}`

  // A vhost of the run's own where rabbitmqctl allows; otherwise the broker's default one, shared.
  const vhost = createVhost(
    `commerce-chaos-${runId}`,
    decodeURIComponent(new URL(targets.rabbitmqUrl).username || 'guest'),
  )
  const inVhost = (url: URL) => {
    if (vhost) url.pathname = `/${encodeURIComponent(vhost.name)}`
    return url
  }
  const users = new Set<number>()
  let observer: Awaited<ReturnType<typeof observeDataPlatform>> | undefined
  let service: Awaited<ReturnType<typeof startService>> | undefined
  let direct: ReturnType<typeof createDatabase> | undefined
  let passed = false
  try {
    const platform = await observeDataPlatform(
      inVhost(new URL(targets.rabbitmqUrl)).toString(),
      vhost ? 'own-vhost' : 'shared',
      () => users,
    )
    observer = platform
    const port = await freePort()
    service = await startService({
      port,
      logFile,
      env: {
        NODE_ENV: 'development',
        DATABASE_URL: serviceDatabaseUrl.toString(),
        REDIS_URL: withHostPort(targets.redisUrl, proxies.redis.port).toString(),
        RABBITMQ_URL: inVhost(withHostPort(targets.rabbitmqUrl, proxies.rabbitmq.port)).toString(),
        JWT_SECRET: jwtSecret,
        RATE_LIMIT_PER_SECOND: '0',
        LOG_LEVEL: 'info',
      },
    })
    print(`npm start is ready on ${service.baseUrl}`)
    await platform.start()
    print(`events are read from ${platform.source}`)
    // The suite's own connection, straight to MySQL: the checks must not depend on the proxy.
    const db = createDatabase({ url: directDatabaseUrl.toString(), connectionLimit: 4 })
    direct = db

    const client = createClient(service.baseUrl)
    const world = await createWorld(client, jwtSecret, profile, random)
    for (const user of world.users) users.add(user.id)
    print(
      `world: ${world.users.length} users, hot product ${world.hotProductId} (${profile.hotStock} in stock), ${world.regularProductIds.length} other products, coupons ${world.couponIds.join(', ')}`,
    )

    let stopLoad = false
    const loadStarted = Date.now()
    const clients = Array.from({ length: profile.clients }, (_, i) =>
      runVirtualClient(client, world, randomSource(options.seed + i + 1), () => stopLoad),
    )
    print('faults:')
    let faults: FaultRecord[] = []
    try {
      faults = await runFaults(proxies, faultPlan(options.short), timing.calmMs, (line) => print(`  ${line}`))
      const lastHeal = Math.max(...faults.map((f) => f.healedAt))
      // The backlog the faults left (events committed up to the last heal) is watched from now on, while
      // the load goes on: it must be published and arrive within 30 s of the heal.
      const backlog = watchBacklog(db.db, platform, lastHeal)
      print(`final replays (up to ${timing.finalReplays}) while the load goes on`)
      const sent = await finalReplays(client, random, {
        concurrency: 6,
        deadline: lastHeal + timing.finalReplayMs,
        max: timing.finalReplays,
      })
      print(`  ${sent} sent`)
      stopLoad = true
      await Promise.all(clients)
      const loadStopped = Date.now()
      print(
        `load: ${client.attempts.length} requests in ${((loadStopped - loadStarted) / 1000).toFixed(0)} s`,
      )
      const drained = await backlog
      // Then everything, the load's last events included, before the events are checked.
      await waitUntil(
        loadStopped + DRAIN_DEADLINE_MS,
        async () => (await pendingEvents(db.db, platform)).length === 0,
      )
      const drain: Check = {
        name: `the outbox drains within ${DRAIN_DEADLINE_MS / 1000} s of the last heal`,
        ok: drained.at !== undefined,
        detail: [
          drained.at !== undefined
            ? `the ${drained.total} events committed up to the last heal were all published and delivered ${((drained.at - lastHeal) / 1000).toFixed(1)} s after it`
            : `${drained.pending.length} of the ${drained.total} events committed up to the last heal were still unpublished or undelivered ${DRAIN_DEADLINE_MS / 1000} s after it:`,
          ...drained.pending
            .slice(0, 5)
            .map(
              (p) => `  ${p.eventId}: ${p.published ? 'marked published, never arrived' : 'never published'}`,
            ),
        ],
      }

      printOutcomes(print, client.attempts)
      const checks: Check[] = [
        {
          name: 'npm start stayed up through every fault',
          ok: !service.exited(),
          detail: [
            service.exited()
              ? 'its process group had exited before the checks'
              : 'its process group is running',
          ],
        },
        checkNoServerErrors(client, logFile, faults),
        checkEveryRequestAnswered(client),
        checkReplays(client, faults),
        await checkDurable(db.db, client),
        await checkSpecInvariants(db.db),
        checkEvents(await committedOrders(db.db), platform.events, await outboxRows(db.db), platform.source),
        drain,
      ]
      print('checks:')
      for (const check of checks) {
        print(`  ${check.ok ? 'PASS' : 'FAIL'}  ${check.name}`)
        for (const line of check.detail) print(`          ${line}`)
      }
      const ok = checks.every((check) => check.ok)
      print(ok ? 'chaos: every check passed' : `chaos: ${checks.filter((c) => !c.ok).length} checks failed`)
      passed = ok
      return { ok, checks, faults, logFile }
    } finally {
      stopLoad = true
      await Promise.allSettled(clients)
    }
  } finally {
    await service?.stop()
    await direct?.close().catch(() => undefined)
    await observer?.close()
    vhost?.remove()
    for (const proxy of Object.values(proxies)) await proxy.close()
    if (!options.keep) {
      await dropDatabase(targets.databaseUrl, database).catch((error: unknown) =>
        print(`could not drop ${database}: ${String(error)}`),
      )
      await deleteRedisKeys(targets.redisUrl, `${database}:`).catch(() => undefined)
    } else {
      print(`kept database ${database} and the service log ${logFile}`)
    }
    // The log of a failed run is kept for reading; a passing run leaves nothing behind.
    if (passed && !options.keep) rmSync(workDir, { recursive: true, force: true })
    else if (!passed) print(`service log kept: ${logFile}`)
  }
}

function printOutcomes(print: (line: string) => void, attempts: Attempt[]) {
  const table = new Map<string, Map<string, number>>()
  for (const a of attempts) {
    const row = table.get(a.request.kind) ?? new Map<string, number>()
    const label = outcomeLabel(a.answer)
    row.set(label, (row.get(label) ?? 0) + 1)
    table.set(a.request.kind, row)
  }
  print('requests by outcome:')
  for (const [kind, row] of [...table].sort()) {
    const total = [...row.values()].reduce((a, b) => a + b, 0)
    const cells = [...row].sort((a, b) => b[1] - a[1]).map(([label, n]) => `${n} × ${label}`)
    print(`  ${kind.padEnd(13)} ${String(total).padStart(6)}  ${cells.join(', ')}`)
  }
}
