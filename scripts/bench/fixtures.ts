import type { Db } from '../../shared/db/client'
import { balanceLedger, balances, coupons } from '../../shared/db/schema'
import { inTransaction } from '../../shared/db/transaction'
import { mintToken } from '../../shared/http/auth'
import { insertProduct, uniqueUserId } from '../../shared/testing/harness'
import type { Profile } from './settings'

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

/** Tokens for an hour: longer than a full bench run. */
const withTokens = (jwtSecret: string, ids: number[]): Promise<Buyer[]> =>
  mapLimit(ids, 8, async (userId) => ({
    userId,
    token: await mintToken(jwtSecret, { sub: userId, role: 'user', ttlSeconds: 3_600 }),
  }))

/** Exactly `count` user ids no one else uses. */
function freshUserIds(count: number): number[] {
  const ids = new Set<number>()
  // Bounded: collisions among 2^47 ids are so rare that twice the count is never reached.
  for (let i = 0; ids.size < count && i < count * 2; i++) ids.add(uniqueUserId())
  if (ids.size < count) throw new Error('could not draw distinct user ids')
  return [...ids]
}

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
  const ids = freshUserIds(count)
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
  return withTokens(jwtSecret, ids)
}

export type BenchProduct = { id: number; name: string; price: number }

/** Products of the bench's own with a realistic name and description (the read scenario's body size). */
export async function makeProducts(
  db: Db,
  count: number,
  values: { price: number; stock: number },
): Promise<BenchProduct[]> {
  const n = Array.from({ length: count }, (_, i) => i)
  return mapLimit(n, 16, async (i) => {
    const name = `Bench hand drip kettle ${String(i).padStart(4, '0')}`
    const description = '0.9 L gooseneck kettle, stainless steel, with a thermometer in the lid'
    const id = await insertProduct({ db }, { name, description, ...values })
    return { id, name, price: values.price }
  })
}

/** Users with a token each and no account: the coupon burst needs callers, not money. */
export function makeUsers(jwtSecret: string, count: number): Promise<Buyer[]> {
  return withTokens(jwtSecret, freshUserIds(count))
}

/** A coupon of the bench's own, issuable now, with `totalQuantity` to give out. */
export async function makeCoupon(db: Db, totalQuantity: number): Promise<number> {
  const [row] = await db
    .insert(coupons)
    .values({
      name: `Bench burst coupon of ${totalQuantity}`,
      type: 'FIXED',
      value: 1_000,
      minOrderAmount: 0,
      totalQuantity,
      issuedQuantity: 0,
      validDays: 30,
      createdAt: new Date(),
    })
    .$returningId()
  if (!row) throw new Error('coupon insert returned no id')
  return row.id
}

const PRICE = 1_000
/** Enough for every order a buyer can place in a run. */
const RICH = 100_000_000

/** Every scenario's products and users, each set its own, made before the service starts. */
export async function makeFixtures(db: Db, jwtSecret: string, profile: Profile) {
  const products = (count: number, stock: number, price = PRICE) => makeProducts(db, count, { price, stock })
  const buyers = (count: number, balance = RICH) => makeBuyers(db, jwtSecret, count, balance)
  const one = async (stock: number) => {
    const [product] = await products(1, stock)
    if (!product) throw new Error('product insert returned nothing')
    return product
  }
  const read = await products(profile.readProducts, 1_000, 39_000)
  const couponUsers = await makeUsers(jwtSecret, profile.coupon.users)
  const orders = {
    service: {
      products: await products(profile.orders.products, 1_000_000),
      buyers: await buyers(profile.orders.buyers),
    },
    raw: {
      products: await products(profile.orders.products, 1_000_000),
      buyers: await buyers(profile.orders.buyers),
    },
  }
  const hot = {
    product: await one(1_000_000),
    buyers: await buyers(profile.hot.buyers),
    rawProduct: await one(100_000_000),
  }
  const events = {
    products: await products(profile.events.products, 1_000_000),
    buyers: await buyers(profile.events.buyers),
  }
  const sales: Array<{ productId: number; buyers: Buyer[] }> = []
  for (let i = 0; i < profile.flash.sales; i++) {
    // Each buyer can pay for exactly one unit: the sale's outcome is decided by stock alone.
    sales.push({
      productId: (await one(profile.flash.stock)).id,
      buyers: await buyers(profile.flash.buyers, PRICE),
    })
  }
  return { read, couponUsers, orders, hot, events, sales }
}

export type Fixtures = Awaited<ReturnType<typeof makeFixtures>>

/**
 * What the final invariant check covers: everything the service wrote. Left out: the raw ceilings'
 * buyers (the minimal transaction writes no ledger entry) and the raw hot row (stock taken without orders).
 */
export function serviceScope(f: Fixtures) {
  const ids = (items: Array<{ id: number }>) => items.map((p) => p.id)
  const users = (list: Buyer[]) => list.map((b) => b.userId)
  return {
    productIds: [
      ...ids(f.read),
      ...ids(f.orders.service.products),
      ...ids(f.orders.raw.products),
      f.hot.product.id,
      ...ids(f.events.products),
      ...f.sales.map((s) => s.productId),
    ],
    userIds: [
      ...users(f.couponUsers),
      ...users(f.orders.service.buyers),
      ...users(f.hot.buyers),
      ...users(f.events.buyers),
      ...f.sales.flatMap((s) => users(s.buyers)),
    ],
  }
}
