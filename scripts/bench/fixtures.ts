import type { Db } from '../../shared/db/client'
import { balanceLedger, balances } from '../../shared/db/schema'
import { inTransaction } from '../../shared/db/transaction'
import { mintToken } from '../../shared/http/auth'
import { insertProduct, uniqueUserId } from '../../shared/testing/harness'

/** Runs `fn` over `items`, at most `limit` at a time. */
export async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length)
  let next = 0
  const worker = async () => {
    while (next < items.length) {
      const i = next++
      results[i] = await fn(items[i] as T)
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
  return results
}

export type Buyer = { userId: number; token: string }

const BATCH = 1_000

/**
 * Fresh users with `balance` each, and a token for each. The rows are those a first charge writes (the
 * account and one CHARGE ledger entry, so balance = sum of the ledger), inserted a thousand at a time:
 * funding ten thousand buyers one charge at a time would take longer than the benchmarks themselves.
 */
export async function makeBuyers(
  db: Db,
  jwtSecret: string,
  count: number,
  balance: number,
): Promise<Buyer[]> {
  const ids = [...new Set(Array.from({ length: count }, () => uniqueUserId()))]
  const now = new Date()
  for (let i = 0; i < ids.length; i += BATCH) {
    const batch = ids.slice(i, i + BATCH)
    await inTransaction(db, async (tx) => {
      await tx
        .insert(balances)
        .values(batch.map((userId) => ({ userId, balance, createdAt: now, updatedAt: now })))
      await tx.insert(balanceLedger).values(
        batch.map((userId) => ({
          userId,
          type: 'CHARGE' as const,
          amount: balance,
          balanceAfter: balance,
          orderId: null,
          createdAt: now,
        })),
      )
    })
  }
  return mapLimit(ids, 8, async (userId) => ({
    userId,
    token: await mintToken(jwtSecret, { sub: userId, role: 'user', ttlSeconds: 3_600 }),
  }))
}

/** Products of the bench's own with a realistic name and description (the read scenario's body size). */
export async function makeProducts(
  db: Db,
  count: number,
  values: { price: number; stock: number },
): Promise<number[]> {
  const n = Array.from({ length: count }, (_, i) => i)
  return mapLimit(n, 16, (i) =>
    insertProduct(
      { db },
      {
        name: `Bench hand drip kettle ${String(i).padStart(4, '0')}`,
        description: '0.9 L gooseneck kettle, stainless steel, with a thermometer in the lid',
        ...values,
      },
    ),
  )
}
