import { eq, sql } from 'drizzle-orm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { AppError } from '../errors'
import type { RuntimeDeps } from '../runtime/deps'
import { createTestDeps, insertProduct } from '../testing/harness'
import { products } from './schema'
import { inTransaction } from './transaction'

let deps: RuntimeDeps

beforeAll(async () => {
  deps = await createTestDeps()
})
afterAll(async () => {
  await deps.close()
})

/** Resolves for every party once `parties` of them have arrived: an explicit signal instead of a sleep. */
function barrier(parties: number) {
  let arrived = 0
  let open: () => void = () => undefined
  const opened = new Promise<void>((resolve) => {
    open = resolve
  })
  return async () => {
    arrived++
    if (arrived === parties) open()
    await opened
  }
}

describe('inTransaction', () => {
  it('retries the whole transaction after a real deadlock, and both sides commit once', async () => {
    const a = await insertProduct(deps, { stock: 100 })
    const b = await insertProduct(deps, { stock: 100 })
    const retries: number[] = []
    const bothHoldTheirFirstRow = barrier(2)
    // Opposite lock order on purpose: once each side holds its first row, each asks for the other's, so
    // InnoDB must kill one side with 1213, which must be retried, not lost. Only the first attempts meet
    // at the barrier: a retry runs alone.
    const take = (first: number, second: number) => {
      let attempt = 0
      return inTransaction(
        deps.db,
        async (tx) => {
          attempt++
          await tx
            .update(products)
            .set({ stock: sql`${products.stock} - 1` })
            .where(eq(products.id, first))
          if (attempt === 1) await bothHoldTheirFirstRow()
          await tx
            .update(products)
            .set({ stock: sql`${products.stock} - 1` })
            .where(eq(products.id, second))
        },
        { onRetry: (retry) => retries.push(retry) },
      )
    }
    await Promise.all([take(a, b), take(b, a)])
    expect(retries.length).toBeGreaterThanOrEqual(1)
    const rows = await deps.db
      .select({ id: products.id, stock: products.stock })
      .from(products)
      .where(sql`${products.id} IN (${a}, ${b})`)
    expect(rows.map((r) => r.stock)).toEqual([98, 98])
  })

  it('answers 503 SERVICE_UNAVAILABLE after its last attempt times out on a lock', async () => {
    const id = await insertProduct(deps, { stock: 5 })
    let release: () => void = () => undefined
    const held = new Promise<void>((resolve) => {
      release = resolve
    })
    let locked: () => void = () => undefined
    const rowIsLocked = new Promise<void>((resolve) => {
      locked = resolve
    })
    const holder = deps.db.transaction(async (tx) => {
      await tx.execute(sql`SELECT id FROM products WHERE id = ${id} FOR UPDATE`)
      locked()
      await held
    })
    await rowIsLocked
    let attempts = 0
    const waiting = inTransaction(
      deps.db,
      async (tx) => {
        attempts++
        // Only this file's own pool keeps the shorter wait; it is closed after these tests.
        await tx.execute(sql`SET SESSION innodb_lock_wait_timeout = 1`)
        await tx.update(products).set({ stock: 0 }).where(eq(products.id, id))
      },
      { attempts: 2 },
    )
    const error = await waiting.catch((e: unknown) => e)
    release()
    await holder
    expect(error).toBeInstanceOf(AppError)
    expect((error as AppError).code).toBe('SERVICE_UNAVAILABLE')
    expect(attempts).toBe(2)
    const [row] = await deps.db.select({ stock: products.stock }).from(products).where(eq(products.id, id))
    expect(row?.stock).toBe(5)
  })
})
