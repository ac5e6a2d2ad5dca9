import { eq, sql } from 'drizzle-orm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { balanceLedger, balances } from '../db/schema'
import { inTransaction } from '../db/transaction'
import type { RuntimeDeps } from '../runtime/deps'
import { createTestDeps, uniqueUserId } from '../testing/harness'
import { charge, ensureAccount, getBalance, ledgerPage, pay, refund } from './balance'

let deps: RuntimeDeps

beforeAll(async () => {
  deps = await createTestDeps()
})
afterAll(async () => {
  await deps.close()
})

/** Order ids no real order will have: the invariant checker matches payments to orders by id. */
const fakeOrderId = (n: number) => Number.MAX_SAFE_INTEGER - 10_000 + n

async function ledgerSum(userId: number) {
  const [row] = await deps.db
    .select({ sum: sql<string | null>`SUM(${balanceLedger.amount})` })
    .from(balanceLedger)
    .where(eq(balanceLedger.userId, userId))
  return Number(row?.sum ?? 0)
}

describe('balance verbs', () => {
  it('opens an account at 0 on first use, once, however many callers race', async () => {
    const userId = uniqueUserId()
    const reads = await Promise.all(Array.from({ length: 20 }, () => getBalance(deps.db, userId)))
    expect(reads.every((r) => r.balance === 0 && r.userId === userId)).toBe(true)
    const rows = await deps.db.select().from(balances).where(eq(balances.userId, userId))
    expect(rows).toHaveLength(1)
  })

  it('refuses a payment above the balance with INSUFFICIENT_BALANCE and writes nothing', async () => {
    const userId = uniqueUserId()
    await ensureAccount(deps.db, userId)
    await inTransaction(deps.db, (tx) => charge(tx, userId, 1_000))
    await expect(
      inTransaction(deps.db, (tx) => pay(tx, userId, 1_001, fakeOrderId(1), new Date())),
    ).rejects.toMatchObject({
      code: 'INSUFFICIENT_BALANCE',
    })
    expect((await getBalance(deps.db, userId)).balance).toBe(1_000)
    expect(await ledgerSum(userId)).toBe(1_000)
  })

  it('keeps balance = Σ ledger under concurrent charges, payments and refunds, never below 0', async () => {
    const userId = uniqueUserId()
    await ensureAccount(deps.db, userId)
    await inTransaction(deps.db, (tx) => charge(tx, userId, 10_000))
    const outcomes = await Promise.allSettled(
      Array.from({ length: 60 }, (_, i) =>
        inTransaction(deps.db, async (tx): Promise<unknown> => {
          if (i % 3 === 0) return charge(tx, userId, 500)
          if (i % 3 === 1) return pay(tx, userId, 1_000, fakeOrderId(i), new Date())
          return refund(tx, userId, 100, fakeOrderId(100 + i), new Date())
        }),
      ),
    )
    const refused = outcomes.filter((o) => o.status === 'rejected')
    for (const o of refused) expect(o.reason).toMatchObject({ code: 'INSUFFICIENT_BALANCE' })
    const balance = (await getBalance(deps.db, userId)).balance
    expect(balance).toBeGreaterThanOrEqual(0)
    expect(await ledgerSum(userId)).toBe(balance)
    const paid = 20 - refused.length
    expect(balance).toBe(10_000 + 20 * 500 - paid * 1_000 + 20 * 100)
    // Each entry's balanceAfter is the running sum in id order.
    const entries = (await ledgerPage(deps.db, userId, { limit: 100 })).reverse()
    let running = 0
    for (const entry of entries) {
      running += entry.amount
      expect(entry.balanceAfter).toBe(running)
    }
  })

  it('pages the ledger newest first, with one extra row telling that there is more', async () => {
    const userId = uniqueUserId()
    await ensureAccount(deps.db, userId)
    for (const amount of [1, 2, 3]) await inTransaction(deps.db, (tx) => charge(tx, userId, amount))
    const first = await ledgerPage(deps.db, userId, { limit: 2 })
    expect(first.map((r) => r.amount)).toEqual([3, 2, 1])
    const rest = await ledgerPage(deps.db, userId, { limit: 2, cursor: first[1]?.id })
    expect(rest.map((r) => r.amount)).toEqual([1])
  })
})
