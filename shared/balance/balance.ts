import { and, desc, eq, lt, sql } from 'drizzle-orm'
import type { Db, DbOrTx, Tx } from '../db/client'
import { balanceLedger, balances } from '../db/schema'
import { AppError } from '../errors'

export const MAX_BALANCE = 1_000_000_000

export type Balance = { userId: number; balance: number; updatedAt: string }
export type LedgerEntry = {
  id: number
  type: 'CHARGE' | 'PAYMENT' | 'REFUND'
  amount: number
  balanceAfter: number
  orderId: number | null
  createdAt: string
}

/**
 * Opens the account with balance 0 if it has none. Called on its own, before the transaction that moves
 * money, so that concurrent first uses never race on creating the row inside their transactions (an
 * INSERT IGNORE there takes a shared lock, and two shared locks upgrading to exclusive deadlock).
 */
export async function ensureAccount(db: Db, userId: number): Promise<void> {
  const now = new Date()
  await db.insert(balances).ignore().values({ userId, balance: 0, createdAt: now, updatedAt: now })
}

async function findBalance(db: DbOrTx, userId: number): Promise<Balance | undefined> {
  const [row] = await db.select().from(balances).where(eq(balances.userId, userId))
  return row && { userId, balance: row.balance, updatedAt: row.updatedAt.toISOString() }
}

async function readBalance(db: DbOrTx, userId: number): Promise<Balance> {
  const balance = await findBalance(db, userId)
  if (!balance) throw new Error(`balance account ${userId} missing after ensureAccount`)
  return balance
}

/** A read that writes only the first time: the account is opened on first use (docs/api.md). */
export async function getBalance(db: Db, userId: number): Promise<Balance> {
  const existing = await findBalance(db, userId)
  if (existing) return existing
  await ensureAccount(db, userId)
  return readBalance(db, userId)
}

/**
 * Adds `delta` to the balance with the guard in SQL, and writes its ledger entry in the same transaction.
 * The entry takes `balance_after` from the row this transaction has just locked and changed, in the same
 * statement (INSERT … SELECT): one round trip fewer on every order, the hottest path. Returns false when
 * the guard refused (the caller decides which error that is).
 */
async function move(
  tx: Tx,
  entry: { userId: number; type: LedgerEntry['type']; delta: number; orderId: number | null; now: Date },
  guard: ReturnType<typeof sql>,
): Promise<boolean> {
  const [result] = await tx
    .update(balances)
    .set({ balance: sql`${balances.balance} + ${entry.delta}`, updatedAt: entry.now })
    .where(and(eq(balances.userId, entry.userId), guard))
  if (result.affectedRows === 0) return false
  const column = (name: string) => sql.identifier(name)
  await tx.execute(sql`
    INSERT INTO ${balanceLedger}
      (${column('user_id')}, ${column('type')}, ${column('amount')}, ${column('balance_after')}, ${column('order_id')}, ${column('created_at')})
    SELECT ${balances.userId}, ${entry.type}, ${entry.delta}, ${balances.balance}, ${entry.orderId}, ${entry.now}
    FROM ${balances} WHERE ${balances.userId} = ${entry.userId}`)
  return true
}

/** A charge: never above MAX_BALANCE (422 BALANCE_LIMIT_EXCEEDED). Call ensureAccount first. */
export async function charge(tx: Tx, userId: number, amount: number, now = new Date()): Promise<Balance> {
  const moved = await move(
    tx,
    { userId, type: 'CHARGE', delta: amount, orderId: null, now },
    sql`${balances.balance} + ${amount} <= ${MAX_BALANCE}`,
  )
  if (!moved) {
    throw new AppError(
      'BALANCE_LIMIT_EXCEEDED',
      `A balance may not exceed ${MAX_BALANCE} won; this charge would`,
    )
  }
  return readBalance(tx, userId)
}

/**
 * An order's payment: never below 0 (409 INSUFFICIENT_BALANCE). A user without an account has nothing
 * to pay with, except for a free order (a coupon covered all of it): that opens the account here.
 */
export async function pay(tx: Tx, userId: number, amount: number, orderId: number, now: Date): Promise<void> {
  const entry = { userId, type: 'PAYMENT' as const, delta: -amount, orderId, now }
  const guard = sql`${balances.balance} >= ${amount}`
  let moved = await move(tx, entry, guard)
  if (!moved && amount === 0) {
    await tx.insert(balances).ignore().values({ userId, balance: 0, createdAt: now, updatedAt: now })
    moved = await move(tx, entry, guard)
  }
  if (!moved)
    throw new AppError('INSUFFICIENT_BALANCE', `The order total of ${amount} won exceeds the balance`)
}

/** A cancelled order's refund: always applies (it returns money that was paid). */
export async function refund(
  tx: Tx,
  userId: number,
  amount: number,
  orderId: number,
  now: Date,
): Promise<void> {
  const moved = await move(tx, { userId, type: 'REFUND', delta: amount, orderId, now }, sql`TRUE`)
  if (!moved) throw new Error(`balance account ${userId} missing for a refund`)
}

/** Ledger entries, newest first; from the primary, since a user reads their own fresh writes here. */
export async function ledgerPage(
  db: Db,
  userId: number,
  page: { limit: number; cursor?: number | undefined },
) {
  return db
    .select()
    .from(balanceLedger)
    .where(
      and(
        eq(balanceLedger.userId, userId),
        page.cursor === undefined ? undefined : lt(balanceLedger.id, page.cursor),
      ),
    )
    .orderBy(desc(balanceLedger.id))
    .limit(page.limit + 1)
}

export const toLedgerEntry = (row: typeof balanceLedger.$inferSelect): LedgerEntry => ({
  id: row.id,
  type: row.type,
  amount: row.amount,
  balanceAfter: row.balanceAfter,
  orderId: row.orderId,
  createdAt: row.createdAt.toISOString(),
})
