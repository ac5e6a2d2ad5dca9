import { eq } from 'drizzle-orm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { poolOf } from '../db/client'
import { coupons, idempotencyKeys, userCoupons } from '../db/schema'
import { sqlText } from '../db/sql-text'
import { KeyTaken, noKey, type RecordEffect } from '../idempotency/idempotency'
import type { RuntimeDeps } from '../runtime/deps'
import { createTestDeps, holderInMysql, uniqueUserId } from '../testing/harness'
import { type CouponDefinition, DAY_MS } from './coupons'
import { type PersistRequest, persistBatch } from './persist'

let deps: RuntimeDeps

beforeAll(async () => {
  deps = await createTestDeps()
})
afterAll(async () => {
  await deps.close()
})

async function insertCoupon(totalQuantity: number, validDays = 3): Promise<CouponDefinition> {
  const [row] = await deps.db
    .insert(coupons)
    .values({
      name: 'persist test',
      type: 'FIXED',
      value: 700,
      minOrderAmount: 0,
      totalQuantity,
      issuedQuantity: 0,
      validDays,
      createdAt: new Date(),
    })
    .$returningId()
  if (!row) throw new Error('no coupon id')
  return {
    id: row.id,
    name: 'persist test',
    type: 'FIXED',
    value: 700,
    minOrderAmount: 0,
    totalQuantity,
    issueStartsAt: null,
    issueEndsAt: null,
    validDays,
  }
}

async function mysqlState(couponId: number) {
  const [row] = await deps.db.select().from(coupons).where(eq(coupons.id, couponId))
  const rows = await deps.db.select().from(userCoupons).where(eq(userCoupons.couponId, couponId))
  return { issued: row?.issuedQuantity, rows }
}

const winner = (coupon: CouponDefinition, userId: number, record: RecordEffect = noKey): PersistRequest => ({
  coupon,
  userId,
  record,
  now: new Date(),
})

/** A key that stores itself with the result, as the idempotency layer's does (shared/idempotency). */
const keyRecord = (userId: number, key: string): RecordEffect => ({
  insert: async () => undefined,
  sql: (result) =>
    sqlText(
      'INSERT INTO idempotency_keys (user_id, idempotency_key, method, path, request_hash, response_status, response_body, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
      [userId, key, 'POST', '/v1/coupons/1/issue', 'h', 201, JSON.stringify(result), new Date()],
    ),
})

const codeOf = (outcome: Awaited<ReturnType<typeof persistBatch>>[number]) =>
  'issued' in outcome
    ? 'ISSUED'
    : outcome.error instanceof KeyTaken
      ? 'KEY_TAKEN'
      : String((outcome.error as { code?: string }).code ?? outcome.error.message)

describe('persistBatch: winners written together', () => {
  it('gives every winner its own user coupon row, with the id read back, and takes their slots at once', async () => {
    const coupon = await insertCoupon(10, 3)
    const users = Array.from({ length: 7 }, () => uniqueUserId())
    const outcomes = await persistBatch(
      poolOf(deps.db),
      users.map((u) => winner(coupon, u)),
    )
    expect(outcomes.map(codeOf)).toEqual(users.map(() => 'ISSUED'))
    const state = await mysqlState(coupon.id)
    expect(state.issued).toBe(7)
    for (const [i, outcome] of outcomes.entries()) {
      if (!('issued' in outcome)) throw new Error('not issued')
      const row = state.rows.find((r) => r.userId === users[i])
      expect(row).toBeDefined()
      expect(outcome.issued).toEqual({
        userCouponId: row?.id,
        couponId: coupon.id,
        name: 'persist test',
        type: 'FIXED',
        value: 700,
        minOrderAmount: 0,
        status: 'AVAILABLE',
        issuedAt: row?.issuedAt.toISOString(),
        expiresAt: row?.expiresAt.toISOString(),
      })
      expect(Date.parse(outcome.issued.expiresAt) - Date.parse(outcome.issued.issuedAt)).toBe(3 * DAY_MS)
    }
  })

  it('decides each winner on its own, in arrival order: a holder and the ones past the last slot are refused, the others issued', async () => {
    const coupon = await insertCoupon(4)
    const [held, a, b, c, d] = Array.from({ length: 5 }, () => uniqueUserId()) as [
      number,
      number,
      number,
      number,
      number,
    ]
    await holderInMysql(deps, coupon.id, held)
    // Redis believed there was room for all of them (a stale state): MySQL has 3 slots left.
    const outcomes = await persistBatch(poolOf(deps.db), [
      winner(coupon, a),
      winner(coupon, held),
      winner(coupon, b),
      winner(coupon, c),
      winner(coupon, d),
      winner(coupon, a),
    ])
    expect(outcomes.map(codeOf)).toEqual([
      'ISSUED',
      'COUPON_ALREADY_ISSUED',
      'ISSUED',
      'ISSUED',
      'COUPON_SOLD_OUT',
      'COUPON_ALREADY_ISSUED',
    ])
    const state = await mysqlState(coupon.id)
    expect(state.issued).toBe(4)
    expect(state.rows.map((r) => r.userId).sort()).toEqual([held, a, b, c].sort())
  })

  it('a winner whose write fails (its Idempotency-Key committed by another request) fails alone: the others are issued', async () => {
    const coupon = await insertCoupon(10)
    const users = Array.from({ length: 4 }, () => uniqueUserId())
    const taken = users[2] as number
    const key = `persist-test-${uniqueUserId()}`
    await deps.db.insert(idempotencyKeys).values({
      userId: taken,
      key,
      method: 'POST',
      path: `/v1/coupons/${coupon.id}/issue`,
      requestHash: 'h',
      responseStatus: 201,
      responseBody: '{}',
      createdAt: new Date(),
    })
    const outcomes = await persistBatch(
      poolOf(deps.db),
      users.map((u) =>
        winner(coupon, u, u === taken ? keyRecord(u, key) : keyRecord(u, `persist-test-${uniqueUserId()}`)),
      ),
    )
    expect(outcomes.map(codeOf)).toEqual(['ISSUED', 'ISSUED', 'KEY_TAKEN', 'ISSUED'])
    const state = await mysqlState(coupon.id)
    expect(state.issued).toBe(3)
    expect(state.rows.map((r) => r.userId).sort()).toEqual(users.filter((u) => u !== taken).sort())
    // Each winner's key was stored with its own response, in the transaction of its row.
    for (const [i, u] of users.entries()) {
      const outcome = outcomes[i]
      if (!outcome || !('issued' in outcome)) continue
      const [stored] = await deps.db.select().from(idempotencyKeys).where(eq(idempotencyKeys.userId, u))
      expect(JSON.parse(stored?.responseBody ?? 'null')).toEqual(outcome.issued)
    }
  })

  it('batches racing for the last slots never over-issue, nor issue twice to one user', async () => {
    const coupon = await insertCoupon(25)
    const users = Array.from({ length: 60 }, () => uniqueUserId())
    const pool = poolOf(deps.db)
    // Twelve batches of ten at once, every user in two of them.
    const batches = Array.from({ length: 12 }, (_, b) =>
      Array.from({ length: 10 }, (_, i) => users[(b * 10 + i) % users.length] as number),
    )
    const outcomes = (
      await Promise.all(
        batches.map((batch) =>
          persistBatch(
            pool,
            batch.map((u) => winner(coupon, u)),
          ),
        ),
      )
    ).flat()
    const codes = outcomes.map(codeOf)
    expect(codes.filter((c) => c === 'ISSUED')).toHaveLength(25)
    expect(new Set(codes)).toEqual(new Set(['ISSUED', 'COUPON_SOLD_OUT', 'COUPON_ALREADY_ISSUED']))
    const state = await mysqlState(coupon.id)
    expect(state.issued).toBe(25)
    expect(new Set(state.rows.map((r) => r.userId)).size).toBe(25)
  })
})
