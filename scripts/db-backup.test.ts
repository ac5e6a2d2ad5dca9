import { execFile } from 'node:child_process'
import { randomInt } from 'node:crypto'
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import type { Hono } from 'hono'
import mysql from 'mysql2/promise'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import createBalanceChargeApp from '../functions/balance-charge/handler'
import createOrderCancelApp from '../functions/order-cancel/handler'
import createOrderCreateApp from '../functions/order-create/handler'
import { ENV_VARS } from '../shared/config'
import { createDatabase } from '../shared/db/client'
import type { AppEnv } from '../shared/http/context'
import { checkInvariants } from '../shared/invariants/check'
import { applyMigrations, type RuntimeDeps, redisKeyPrefix } from '../shared/runtime/deps'
import { TEST_ENV } from '../shared/testing/env'
import {
  call,
  createTestApp,
  createTestDeps,
  fundUser,
  giveCoupon,
  insertProduct,
  testConfig,
  tokenFor,
  uniqueUserId,
} from '../shared/testing/harness'
import { type OwnMariaDb, ownMariaDbUnavailable, startOwnMariaDb } from '../shared/testing/own-mariadb'
import { pruneBackups, stampOf, untilNext } from './db-backup'
import { BACKUP_KEEP_DAYS } from './infra/k8s'
import { MANIFEST_FILE } from './lib/backup-format'

/**
 * `npm run db:backup` and `npm run db:restore`, run as an operator runs them: a dump, more orders, then
 * restores into scratch databases, with and without --until, each compared table by table with what the
 * source held at that point and checked by the invariant checker. Point-in-time recovery needs a binary
 * log: the shared MariaDB is used when it writes one, else a mariadbd of this test's own.
 */

const ROOT = new URL('..', import.meta.url).pathname
const TSX = join(ROOT, 'node_modules', '.bin', 'tsx')
const run = promisify(execFile)

type CliResult = { code: number; stdout: string; stderr: string }
async function cli(
  script: 'db-backup' | 'db-restore',
  args: string[],
  databaseUrl: string,
): Promise<CliResult> {
  try {
    const { stdout, stderr } = await run(TSX, [join(ROOT, 'scripts', `${script}.ts`), ...args], {
      cwd: ROOT,
      env: { ...process.env, DATABASE_URL: databaseUrl },
    })
    return { code: 0, stdout, stderr }
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string }
    return { code: failed.code ?? -1, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' }
  }
}

const urlFor = (databaseUrl: string, database: string) => {
  const url = new URL(databaseUrl)
  url.pathname = `/${database}`
  return url.toString()
}

async function logBinOn(databaseUrl: string): Promise<boolean> {
  const connection = await mysql.createConnection({ uri: urlFor(databaseUrl, '') })
  try {
    const [rows] = await connection.query('SELECT @@log_bin AS on_')
    return (rows as Array<{ on_: number }>)[0]?.on_ === 1
  } finally {
    await connection.end()
  }
}

/** Every row of every table, in a stable order, with times as the exact strings MariaDB stores. */
async function contents(databaseUrl: string): Promise<Record<string, string[]>> {
  const connection = await mysql.createConnection({
    uri: databaseUrl,
    dateStrings: true,
    bigNumberStrings: true,
  })
  try {
    const [tables] = await connection.query(
      'SELECT TABLE_NAME AS name FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME',
    )
    const result: Record<string, string[]> = {}
    for (const { name } of tables as Array<{ name: string }>) {
      const [rows] = await connection.query(`SELECT * FROM \`${name}\``)
      result[name] = (rows as unknown[]).map((row) => JSON.stringify(row)).sort()
    }
    return result
  } finally {
    await connection.end()
  }
}

async function invariantsOf(databaseUrl: string): Promise<string[]> {
  const database = createDatabase({ url: databaseUrl })
  try {
    return await checkInvariants(database.db)
  } finally {
    await database.close()
  }
}

async function databaseExists(databaseUrl: string, name: string): Promise<boolean> {
  const connection = await mysql.createConnection({ uri: urlFor(databaseUrl, '') })
  try {
    const [rows] = await connection.query('SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?', [
      name,
    ])
    return (rows as unknown[]).length > 0
  } finally {
    await connection.end()
  }
}

const SKIP = await (async () => {
  if (await logBinOn(TEST_ENV.DATABASE_URL as string)) return ''
  const unavailable = ownMariaDbUnavailable()
  return unavailable ? ` (skipped: the shared MariaDB has no binary log and ${unavailable})` : ''
})()

describe.skipIf(SKIP !== '')(`db:backup and db:restore with point-in-time recovery${SKIP}`, () => {
  let own: OwnMariaDb | undefined
  let serverUrl: string
  let sourceUrl: string
  let deps: RuntimeDeps
  let app: Hono<AppEnv>
  let backups: string
  const created: string[] = []
  const scratch = (label: string) => {
    const name = `pitr_${label}_${randomInt(1e9)}`
    created.push(name)
    return name
  }

  beforeAll(async () => {
    const shared = TEST_ENV.DATABASE_URL as string
    if (await logBinOn(shared)) {
      serverUrl = shared
    } else {
      own = await startOwnMariaDb()
      serverUrl = own.url('')
    }
    sourceUrl = urlFor(serverUrl, scratch('source'))
    await applyMigrations(testConfig({ DATABASE_URL: sourceUrl }))
    deps = await createTestDeps({ DATABASE_URL: sourceUrl })
    app = createTestApp(deps, [createOrderCreateApp, createOrderCancelApp, createBalanceChargeApp])
    backups = await mkdtemp(join(tmpdir(), 'commerce-backups-'))
  })

  afterAll(async () => {
    if (deps) {
      // This file's Redis keys (caches, coupon state, outbox jobs) are namespaced by its own database.
      const prefix = redisKeyPrefix(sourceUrl)
      let cursor = '0'
      do {
        const [next, keys] = await deps.redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000)
        // The client prefixes commands, not SCAN's answers: strip it before UNLINK adds it again.
        if (keys.length > 0) await deps.redis.unlink(...keys.map((key) => key.slice(prefix.length)))
        cursor = next
      } while (cursor !== '0')
      await deps.close()
    }
    if (own) {
      await own.stop()
    } else if (serverUrl) {
      const connection = await mysql.createConnection({ uri: urlFor(serverUrl, '') })
      for (const name of created) await connection.query(`DROP DATABASE IF EXISTS \`${name}\``)
      await connection.end()
    }
    if (backups) await rm(backups, { recursive: true, force: true })
  })

  type Buyer = { userId: number; token: string }
  const buyer = async (): Promise<Buyer> => {
    const userId = uniqueUserId()
    await fundUser(deps, userId, 100_000)
    return { userId, token: await tokenFor(deps, userId) }
  }
  const order = async (
    who: Buyer,
    items: Array<{ productId: number; quantity: number }>,
    userCouponId?: number,
  ) => {
    const res = await call(app, 'POST', '/v1/orders', {
      token: who.token,
      headers: { 'Idempotency-Key': `pitr-${randomInt(1e12)}` },
      body: { items, ...(userCouponId ? { userCouponId } : {}) },
    })
    expect(res.status, res.text).toBe(201)
    return (res.body as { id: number }).id
  }
  const cancel = async (who: Buyer, orderId: number) => {
    const res = await call(app, 'POST', `/v1/orders/${orderId}/cancel`, { token: who.token })
    expect(res.status, res.text).toBe(200)
  }
  const charge = async (who: Buyer, amount: number) => {
    const res = await call(app, 'POST', `/v1/users/${who.userId}/balance/charge`, {
      token: who.token,
      body: { amount },
    })
    expect(res.status, res.text).toBe(200)
  }

  it('restores the dump alone, and the dump rolled forward to a time, each exactly as the source was then', async () => {
    // Before the backup: products, buyers, orders (one with a coupon), a cancel.
    const [p1, p2, p3] = [
      await insertProduct(deps, { price: 1_200, stock: 40 }),
      await insertProduct(deps, { price: 3_500, stock: 40 }),
      await insertProduct(deps, { price: 990, stock: 40 }),
    ] as [number, number, number]
    const [a, b, c] = [await buyer(), await buyer(), await buyer()] as [Buyer, Buyer, Buyer]
    const { userCouponId } = await giveCoupon(deps, a.userId, { type: 'FIXED', value: 500 })
    const a1 = await order(
      a,
      [
        { productId: p1, quantity: 2 },
        { productId: p2, quantity: 1 },
      ],
      userCouponId,
    )
    const b1 = await order(b, [{ productId: p2, quantity: 3 }])
    await order(c, [{ productId: p3, quantity: 5 }])
    await cancel(b, b1)
    const atBackup = await contents(sourceUrl)

    const dir = join(backups, 'first')
    const backup = await cli('db-backup', ['--out', dir], sourceUrl)
    expect(backup, backup.stderr).toMatchObject({ code: 0 })
    const manifest = JSON.parse(await readFile(join(dir, MANIFEST_FILE), 'utf8'))
    expect(manifest.binlog).toMatchObject({ file: expect.any(String), position: expect.any(Number) })

    // After it: more orders, a cancel of an order the backup holds as PAID, a charge.
    const b2 = await order(b, [
      { productId: p1, quantity: 1 },
      { productId: p3, quantity: 2 },
    ])
    await order(c, [{ productId: p2, quantity: 2 }])
    await cancel(a, a1)
    await charge(c, 7_000)
    const atPoint = await contents(sourceUrl)
    // Binary log times are whole seconds: the point is the next second boundary, and nothing more is
    // written before the clock (the server's, on this machine) has passed it.
    const point = new Date(Math.ceil((Date.now() + 1) / 1000) * 1000)
    await new Promise((resolve) => setTimeout(resolve, point.getTime() - Date.now() + 20))
    expect(Date.now()).toBeGreaterThan(point.getTime())

    // After the point: more of everything.
    await order(a, [{ productId: p3, quantity: 1 }])
    await cancel(b, b2)
    await charge(a, 1_234)
    const atEnd = await contents(sourceUrl)
    // Three different states, or the comparisons below would prove nothing.
    expect(atPoint.orders).not.toEqual(atBackup.orders)
    expect(atEnd.orders).not.toEqual(atPoint.orders)
    expect(atEnd.balance_ledger).not.toEqual(atPoint.balance_ledger)

    const plain = scratch('plain')
    const restored = await cli('db-restore', ['--from', dir, '--into', plain], sourceUrl)
    expect(restored, restored.stderr).toMatchObject({ code: 0 })
    expect(await contents(urlFor(serverUrl, plain))).toEqual(atBackup)
    expect(await invariantsOf(urlFor(serverUrl, plain))).toEqual([])

    const pointInTime = scratch('point')
    const rolled = await cli(
      'db-restore',
      ['--from', dir, '--into', pointInTime, '--until', point.toISOString()],
      sourceUrl,
    )
    expect(rolled, rolled.stderr).toMatchObject({ code: 0 })
    expect(await contents(urlFor(serverUrl, pointInTime))).toEqual(atPoint)
    expect(await invariantsOf(urlFor(serverUrl, pointInTime))).toEqual([])

    const latest = scratch('latest')
    const later = new Date(Date.now() + 3_600_000).toISOString()
    const all = await cli('db-restore', ['--from', dir, '--into', latest, '--until', later], sourceUrl)
    expect(all, all.stderr).toMatchObject({ code: 0 })
    expect(await contents(urlFor(serverUrl, latest))).toEqual(atEnd)
    expect(await invariantsOf(urlFor(serverUrl, latest))).toEqual([])

    // The restores wrote nothing to the binary log: the source's own history is all a replay finds.
    const again = scratch('again')
    const replayAgain = await cli('db-restore', ['--from', dir, '--into', again, '--until', later], sourceUrl)
    expect(replayAgain.code).toBe(0)
    expect(await contents(urlFor(serverUrl, again))).toEqual(atEnd)

    // Refusals change nothing: an existing database, a damaged dump, --until before the backup.
    const existing = await cli('db-restore', ['--from', dir, '--into', plain], sourceUrl)
    expect(existing.code).toBe(1)
    expect(existing.stderr).toContain(`database ${plain} already exists`)
    expect(await contents(urlFor(serverUrl, plain))).toEqual(atBackup)

    const damaged = join(backups, 'damaged')
    await cp(dir, damaged, { recursive: true })
    const dump = await readFile(join(damaged, 'dump.sql.gz'))
    dump[dump.length - 10] = (dump[dump.length - 10] ?? 0) ^ 0xff
    await writeFile(join(damaged, 'dump.sql.gz'), dump)
    const intoDamaged = scratch('damaged')
    const refused = await cli('db-restore', ['--from', damaged, '--into', intoDamaged], sourceUrl)
    expect(refused.code).toBe(1)
    expect(refused.stderr).toContain('does not match its manifest')
    expect(await databaseExists(serverUrl, intoDamaged)).toBe(false)

    const tooEarly = scratch('early')
    const early = await cli(
      'db-restore',
      [
        '--from',
        dir,
        '--into',
        tooEarly,
        '--until',
        new Date(Date.parse(manifest.startedAt) - 60_000).toISOString(),
      ],
      sourceUrl,
    )
    expect(early.code).toBe(1)
    expect(early.stderr).toContain('is before this backup')
    expect(await databaseExists(serverUrl, tooEarly)).toBe(false)
  })

  it('refuses --until for a backup without a binlog position, bad times and names, and a used folder', async () => {
    const dir = join(backups, 'no-binlog')
    const backup = await cli('db-backup', ['--out', dir], sourceUrl)
    expect(backup.code, backup.stderr).toBe(0)
    const manifest = JSON.parse(await readFile(join(dir, MANIFEST_FILE), 'utf8'))
    await writeFile(join(dir, MANIFEST_FILE), JSON.stringify({ ...manifest, binlog: null }))
    const target = scratch('nobinlog')
    const refused = await cli(
      'db-restore',
      ['--from', dir, '--into', target, '--until', new Date().toISOString()],
      sourceUrl,
    )
    expect(refused.code).toBe(1)
    expect(refused.stderr).toContain('no binlog position')
    expect(await databaseExists(serverUrl, target)).toBe(false)

    for (const until of ['yesterday', '2026-11-29 03:12:00', '2026-11-29T03:12:00']) {
      const bad = await cli(
        'db-restore',
        ['--from', dir, '--into', scratch('bad'), '--until', until],
        sourceUrl,
      )
      expect({ until, code: bad.code }).toEqual({ until, code: 1 })
      expect(bad.stderr).toContain('--until must be an ISO-8601 time with a zone')
    }
    const badName = await cli('db-restore', ['--from', dir, '--into', 'drop`me'], sourceUrl)
    expect(badName.code).toBe(1)
    expect(badName.stderr).toContain('--into must be a database name')
    const usage = await cli('db-restore', ['--from', dir], sourceUrl)
    expect(usage.code).toBe(2)
    expect(usage.stderr).toContain('Usage: npm run db:restore')

    const used = await cli('db-backup', ['--out', dir], sourceUrl)
    expect(used.code).toBe(1)
    expect(used.stderr).toContain('is not empty')
  })
})

describe('the compose backup service', () => {
  it('runs the backup image daily with retention, reading only DATABASE_URL, after MySQL is healthy', async () => {
    type Service = {
      build?: { target?: string }
      command?: string[]
      environment?: Record<string, string>
      volumes?: string[]
      depends_on?: Record<string, { condition: string }>
    }
    const compose = parse(await readFile(join(ROOT, 'docker-compose.yml'), 'utf8')) as {
      services: Record<string, Service>
      volumes: Record<string, unknown>
    }
    const service = compose.services['db-backup']
    expect(service?.build?.target).toBe('backup')
    expect(await readFile(join(ROOT, 'Dockerfile'), 'utf8')).toMatch(/^FROM \S+ AS backup$/m)
    expect(service?.command).toEqual([
      '--root',
      '/backups',
      '--keep-days',
      String(BACKUP_KEEP_DAYS),
      '--daily-at',
      '03:30',
    ])
    expect(Object.keys(service?.environment ?? {})).toEqual(['DATABASE_URL'])
    expect(ENV_VARS).toContain('DATABASE_URL')
    expect(service?.environment?.DATABASE_URL).toContain('@mysql-primary:3306/commerce')
    expect(service?.depends_on).toEqual({ 'mysql-primary': { condition: 'service_healthy' } })
    expect(service?.volumes).toEqual(['db-backups:/backups'])
    expect(compose.volumes).toHaveProperty('db-backups')
  })
})

describe('db:backup retention and schedule', () => {
  it('deletes stamped backups older than --keep-days, but never the newest finished one', async () => {
    const root = await mkdtemp(join(tmpdir(), 'commerce-prune-'))
    try {
      const now = new Date('2026-11-29T03:30:00Z')
      const day = 86_400_000
      const make = async (daysAgo: number, finished: boolean) => {
        const name = stampOf(new Date(now.getTime() - daysAgo * day))
        await mkdir(join(root, name))
        if (finished) await writeFile(join(root, name, MANIFEST_FILE), '{}')
        return name
      }
      const fresh = await make(1, true)
      const edge = await make(13, true)
      const old = await make(20, true)
      const unfinished = await make(30, false)
      await mkdir(join(root, 'not-a-backup'))
      expect(await pruneBackups(root, 14, now)).toEqual([old, unfinished].sort())
      expect(await pruneBackups(root, 14, now)).toEqual([])
      // Everything expired: the newest finished backup still stays.
      expect(await pruneBackups(root, 1, new Date(now.getTime() + 60 * day))).toEqual([edge])
      expect(fresh).toMatch(/^\d{8}T\d{6}Z$/)
    } finally {
      await rm(root, { recursive: true, force: true })
    }
  })

  it('waits for the next HH:MM in UTC', () => {
    const now = new Date('2026-11-29T03:29:00Z')
    expect(untilNext('03:30', now)).toBe(60_000)
    expect(untilNext('03:29', now)).toBe(86_400_000)
    expect(untilNext('00:00', now)).toBe((20 * 60 + 31) * 60_000)
  })
})
