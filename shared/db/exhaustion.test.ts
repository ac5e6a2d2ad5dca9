import { randomUUID } from 'node:crypto'
import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import { sql } from 'drizzle-orm'
import type { Hono } from 'hono'
import mysql from 'mysql2/promise'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import createBalanceChargeApp from '../../functions/balance-charge/handler'
import createBalanceGetApp from '../../functions/balance-get/handler'
import createOrderCreateApp from '../../functions/order-create/handler'
import { isDependencyFailure } from '../failures'
import type { AppEnv } from '../http/context'
import { checkInvariants } from '../invariants/check'
import { DB_CONNECTION_EXHAUSTED_CHANNEL, type DbConnectionExhaustedEvent, type Metrics } from '../metrics'
import type { RuntimeDeps } from '../runtime/deps'
import { TEST_ENV } from '../testing/env'
import {
  call,
  createTestApp,
  createTestDeps,
  expectProblemShape,
  fundUser,
  insertProduct,
  tokenFor,
  uniqueUserId,
} from '../testing/harness'
import { type OwnMariaDb, ownMariaDbUnavailable, startOwnMariaDb } from '../testing/own-mariadb'
import { createDatabase, type Database, EXHAUSTED_TRIES, PoolAcquireTimeoutError, poolOf } from './client'
import { migrateDatabase } from './migrate'

/**
 * Connection exhaustion against a real MariaDB: a mariadbd of this test's own with max_connections at its
 * minimum (10), filled by connections the test holds, so that the server answers "Too many connections"
 * (1040) as it does when function instances outgrow the budget. The pool retries a refusal briefly, then
 * the request gets 503 with Retry-After; a caller queued behind a saturated pool is bounded too.
 */

const UNAVAILABLE = ownMariaDbUnavailable()
const MAX_CONNECTIONS = 10
const APP_PASSWORD = `app-${randomUUID().slice(0, 8)}`

let server: OwnMariaDb
let admin: mysql.Connection
let appUrl = ''
/** Connections the test holds to keep the server full. */
let hogs: mysql.Connection[] = []

/** Opens connections as the application's user until the server refuses one: it is then full. */
async function fillServer() {
  for (;;) {
    try {
      hogs.push(await mysql.createConnection({ uri: appUrl }))
    } catch (error) {
      if ((error as { code?: string }).code === 'ER_CON_COUNT_ERROR') return
      throw error
    }
  }
}

async function releaseServer() {
  await Promise.all(hogs.map((hog) => hog.end()))
  hogs = []
}

/** What the pools report on the channel while `run` runs. */
async function exhaustionDuring<T>(run: () => Promise<T>) {
  const events: DbConnectionExhaustedEvent[] = []
  const listener = (message: unknown) => events.push(message as DbConnectionExhaustedEvent)
  subscribe(DB_CONNECTION_EXHAUSTED_CHANNEL, listener)
  try {
    const result = await run()
    return { result, events, count: (outcome: string) => events.filter((e) => e.outcome === outcome).length }
  } finally {
    unsubscribe(DB_CONNECTION_EXHAUSTED_CHANNEL, listener)
  }
}

/** The `code` of an error and of each of its causes. */
function codesOf(error: unknown): unknown[] {
  const codes: unknown[] = []
  for (let e = error; e !== null && typeof e === 'object'; e = (e as { cause?: unknown }).cause) {
    codes.push((e as { code?: unknown }).code)
  }
  return codes
}

/** Resolves `all` once `arrive` has been called `n` times. */
function barrier(n: number) {
  let arrived = 0
  let release: () => void = () => undefined
  const all = new Promise<void>((resolve) => {
    release = resolve
  })
  return {
    all,
    arrive() {
      arrived += 1
      if (arrived === n) release()
    },
  }
}

async function counterValue(metrics: Metrics, outcome: 'retried' | 'gave_up') {
  const metric = await metrics.dbConnectionExhausted.get()
  return metric.values
    .filter((v) => v.labels.pool === 'primary' && v.labels.outcome === outcome)
    .reduce((sum, v) => sum + v.value, 0)
}

describe.skipIf(UNAVAILABLE)(
  `a MariaDB out of connections${UNAVAILABLE ? ` (skipped: ${UNAVAILABLE})` : ''}`,
  () => {
    beforeAll(async () => {
      server = await startOwnMariaDb()
      await migrateDatabase(server.url('commerce'))
      admin = await mysql.createConnection({ uri: server.url('commerce') })
      // Not root: root may always open one connection more than max_connections, the application may not.
      await admin.query(`CREATE USER 'app'@'%' IDENTIFIED BY '${APP_PASSWORD}'`)
      await admin.query("GRANT ALL ON commerce.* TO 'app'@'%'")
      await admin.query(`SET GLOBAL max_connections = ${MAX_CONNECTIONS}`)
      appUrl = `mysql://app:${APP_PASSWORD}@127.0.0.1:${server.port}/commerce`
    }, 120_000)

    afterAll(async () => {
      await releaseServer()
      await admin?.end()
      await server?.stop()
    })

    describe('the pool', () => {
      it('retries a refused connection with pauses, then gives the caller the server error', async () => {
        const database = createDatabase({ url: appUrl })
        try {
          await fillServer()
          const { result, count } = await exhaustionDuring(() =>
            database.db.execute(sql`SELECT 1`).then(
              () => undefined,
              (error: unknown) => error,
            ),
          )
          expect(isDependencyFailure(result), String(result)).toBe(true)
          expect(codesOf(result)).toContain('ER_CON_COUNT_ERROR')
          // Every try refused: EXHAUSTED_TRIES in all, so a retry before each but the first.
          expect({ retried: count('retried'), gaveUp: count('gave_up') }).toEqual({
            retried: EXHAUSTED_TRIES - 1,
            gaveUp: 1,
          })
        } finally {
          await releaseServer()
          await database.close()
        }
      })

      it('gets the connection on a retry once the server has room again, through raw mysql2 as through drizzle', async () => {
        const database = createDatabase({ url: appUrl })
        try {
          await fillServer()
          // The first refusal frees a slot: the retry, at least 40 ms later, finds it.
          let freed: Promise<void> | undefined
          const { result, count } = await exhaustionDuring(async () => {
            const listener = () => {
              freed ??= hogs.pop()?.end()
            }
            subscribe(DB_CONNECTION_EXHAUSTED_CHANNEL, listener)
            try {
              // The pool's own query(), as raw mysql2 callers use it: it takes its connection from the same place.
              const [rows] = await poolOf(database.db).promise().query('SELECT 7 AS seven')
              return rows
            } finally {
              unsubscribe(DB_CONNECTION_EXHAUSTED_CHANNEL, listener)
            }
          })
          await freed
          expect(result).toEqual([{ seven: 7 }])
          expect(count('retried')).toBeGreaterThanOrEqual(1)
          expect(count('gave_up')).toBe(0)
        } finally {
          await releaseServer()
          await database.close()
        }
      })
    })

    describe('requests', () => {
      let deps: RuntimeDeps
      /** Test data goes in and is checked through a pool of its own, so the app's pool starts empty. */
      let fixtures: Database
      const pools: Database[] = []

      /**
       * The app's own dependencies (metrics, Redis, config) with its MySQL on the server under test, through
       * a new pool of 20 (nothing open yet) against a server that admits 10 at most.
       */
      const freshApp = (): { database: Database; app: Hono<AppEnv> } => {
        const database = createDatabase({ url: appUrl, connectionLimit: 20 })
        pools.push(database)
        const app = createTestApp({ ...deps, db: database.db, dbRead: database.dbRead }, [
          createBalanceGetApp,
          createBalanceChargeApp,
          createOrderCreateApp,
        ])
        return { database, app }
      }

      beforeAll(async () => {
        deps = await createTestDeps()
        fixtures = createDatabase({ url: appUrl })
      })

      afterAll(async () => {
        await Promise.all([...pools, fixtures].map((pool) => pool?.close()))
        await deps?.close()
      })

      it('on a full server: 503 with Retry-After after the retries, never a 500, and nothing changes', async () => {
        const { app } = freshApp()
        const users = Array.from({ length: 8 }, () => uniqueUserId())
        const productId = await insertProduct({ db: fixtures.db }, { stock: 50 })
        for (const user of users) await fundUser({ db: fixtures.db }, user, 100_000)
        const tokens = await Promise.all(users.map((user) => tokenFor(deps, user)))
        const before = {
          retried: await counterValue(deps.metrics, 'retried'),
          gaveUp: await counterValue(deps.metrics, 'gave_up'),
        }
        await fillServer()
        const reads = users.map((user, i) =>
          call(app, 'GET', `/v1/users/${user}/balance`, { token: tokens[i] }),
        )
        const orders = users.map((_, i) =>
          call(app, 'POST', '/v1/orders', {
            token: tokens[i],
            headers: { 'Idempotency-Key': randomUUID() },
            body: { items: [{ productId, quantity: 1 }] },
          }),
        )
        const answers = await Promise.all([...reads, ...orders])
        for (const answer of answers) {
          expectProblemShape(answer, 503, 'SERVICE_UNAVAILABLE')
          expect(answer.headers.get('Retry-After')).toMatch(/^[1-9]\d*$/)
        }
        const after = {
          retried: await counterValue(deps.metrics, 'retried'),
          gaveUp: await counterValue(deps.metrics, 'gave_up'),
        }
        // Each request gave up at least once, and every give-up came after EXHAUSTED_TRIES refusals.
        const gaveUp = after.gaveUp - before.gaveUp
        expect(gaveUp).toBeGreaterThanOrEqual(answers.length)
        expect(after.retried - before.retried).toBe(gaveUp * (EXHAUSTED_TRIES - 1))

        await releaseServer()
        const [rows] = (await admin.query('SELECT COUNT(*) AS n FROM orders WHERE user_id IN (?)', [
          users,
        ])) as unknown as [[{ n: number }]]
        expect(Number(rows[0].n)).toBe(0)
        expect(await checkInvariants(fixtures.db, { productIds: [productId], userIds: users })).toEqual([])
        // The same requests succeed once the server has room: nothing to restart.
        expect((await call(app, 'GET', `/v1/users/${users[0]}/balance`, { token: tokens[0] })).status).toBe(
          200,
        )
      })

      it('under a burst larger than the server admits: every answer a success or a 503, and the invariants hold', async () => {
        const { app } = freshApp()
        const users = Array.from({ length: 10 }, () => uniqueUserId())
        const products = [
          await insertProduct({ db: fixtures.db }, { stock: 1_000 }),
          await insertProduct({ db: fixtures.db }, { stock: 1_000 }),
        ]
        for (const user of users) await fundUser({ db: fixtures.db }, user, 10_000_000)
        const tokens = await Promise.all(users.map((user) => tokenFor(deps, user)))
        // The pool may open 20; the server admits 10, two of them the test's own: refusals are certain.
        const { result: answers, count } = await exhaustionDuring(() =>
          Promise.all(
            Array.from({ length: 80 }, (_, i) =>
              call(app, 'POST', '/v1/orders', {
                token: tokens[i % users.length],
                headers: { 'Idempotency-Key': randomUUID() },
                body: { items: [{ productId: products[i % 2], quantity: 1 }] },
              }),
            ),
          ),
        )
        const statuses = answers.map((a) => a.status)
        expect(statuses.filter((s) => s !== 201 && s !== 503)).toEqual([])
        for (const answer of answers.filter((a) => a.status === 503)) {
          expect(answer.headers.get('Retry-After')).not.toBeNull()
        }
        expect(count('retried')).toBeGreaterThan(0)
        console.log(
          `burst: ${statuses.filter((s) => s === 201).length} placed, ${statuses.filter((s) => s === 503).length} refused; ` +
            `${count('retried')} retries, ${count('gave_up')} give-ups`,
        )
        expect(await checkInvariants(fixtures.db, { productIds: products, userIds: users })).toEqual([])
      })
    })
  },
)

describe('a saturated pool', () => {
  it('gives a queued caller a 503-class error at the acquire timeout instead of letting it wait forever', async () => {
    const database = createDatabase({
      url: TEST_ENV.DATABASE_URL as string,
      connectionLimit: 2,
      acquireTimeoutMs: 300,
    })
    const gate = barrier(1)
    try {
      // Both connections held by transactions that wait for the gate.
      const held = barrier(2)
      const holders = [1, 2].map(() =>
        database.db.transaction(async (tx) => {
          await tx.execute(sql`SELECT 1`)
          held.arrive()
          await gate.all
        }),
      )
      await held.all
      const { result, count } = await exhaustionDuring(() =>
        database.db.execute(sql`SELECT 1`).then(
          () => undefined,
          (error: unknown) => error,
        ),
      )
      // Rejected while both connections are still held: the bound, not a release, ended the wait.
      expect(isDependencyFailure(result)).toBe(true)
      let cause: unknown = result
      while (cause && !(cause instanceof PoolAcquireTimeoutError))
        cause = (cause as { cause?: unknown }).cause
      expect(cause).toBeInstanceOf(PoolAcquireTimeoutError)
      expect({ retried: count('retried'), gaveUp: count('gave_up') }).toEqual({ retried: 0, gaveUp: 1 })
      gate.arrive()
      await Promise.all(holders)
      // The connection handed over after the timed-out caller left went back to the pool: two
      // transactions can again be inside at once (a lost connection would leave the second waiting).
      const inside = barrier(2)
      await Promise.all(
        [1, 2].map(() =>
          database.db.transaction(async (tx) => {
            await tx.execute(sql`SELECT 1`)
            inside.arrive()
            await inside.all
          }),
        ),
      )
    } finally {
      gate.arrive()
      await database.close()
    }
  })
})
