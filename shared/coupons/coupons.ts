import { and, desc, eq, gt, lte, type SQL } from 'drizzle-orm'
import { createCache } from '../cache/cache-aside'
import { createNearCache } from '../cache/near-cache'
import { coupons, userCoupons } from '../db/schema'
import type { Deps } from '../deps'
import { AppError } from '../errors'
import { remainingInRedis } from './issue-state'
import type { CreateCouponInput } from './schemas'

export type CouponType = 'FIXED' | 'PERCENT'

/** What never changes after creation: coupons have no update endpoint, so this is safe to cache long. */
export type CouponDefinition = {
  id: number
  name: string
  type: CouponType
  value: number
  minOrderAmount: number
  totalQuantity: number
  issueStartsAt: string | null
  issueEndsAt: string | null
  validDays: number
}

export type Coupon = Omit<CouponDefinition, 'validDays'> & { remainingQuantity: number; validDays: number }

export type UserCouponStatus = 'AVAILABLE' | 'USED' | 'EXPIRED'

export type UserCoupon = {
  userCouponId: number
  couponId: number
  name: string
  type: CouponType
  value: number
  minOrderAmount: number
  status: UserCouponStatus
  issuedAt: string
  expiresAt: string
  usedAt: string | null
  orderId: number | null
}

export const DAY_MS = 24 * 3600 * 1000
/** Definitions are immutable, so a long life is safe; creating a coupon invalidates its id anyway. */
export const DEFINITION_TTL_MS = 10 * 60 * 1000
/**
 * "No such coupon" is remembered briefly: long enough that hammering an unknown id costs MySQL one read per
 * interval, short enough that a coupon written to MySQL by other means (the seed script) shows up quickly.
 */
const MISSING_TTL_MS = 5_000

export type CouponDeps = Pick<
  Deps,
  'db' | 'dbRead' | 'redis' | 'metrics' | 'logger' | 'config' | 'bus' | 'once'
>

type CouponRow = typeof coupons.$inferSelect

const toDefinition = (row: CouponRow): CouponDefinition => ({
  id: row.id,
  name: row.name,
  type: row.type,
  value: row.value,
  minOrderAmount: row.minOrderAmount,
  totalQuantity: row.totalQuantity,
  issueStartsAt: row.issueStartsAt?.toISOString() ?? null,
  issueEndsAt: row.issueEndsAt?.toISOString() ?? null,
  validDays: row.validDays,
})

const toCoupon = (definition: CouponDefinition, remainingQuantity: number): Coupon => ({
  id: definition.id,
  name: definition.name,
  type: definition.type,
  value: definition.value,
  minOrderAmount: definition.minOrderAmount,
  totalQuantity: definition.totalQuantity,
  remainingQuantity,
  issueStartsAt: definition.issueStartsAt,
  issueEndsAt: definition.issueEndsAt,
  validDays: definition.validDays,
})

/** EXPIRED is not stored: an AVAILABLE coupon whose expiresAt has passed. */
export const viewStatus = (
  row: { status: 'AVAILABLE' | 'USED'; expiresAt: Date },
  now: Date,
): UserCouponStatus =>
  row.status === 'USED' ? 'USED' : row.expiresAt.getTime() <= now.getTime() ? 'EXPIRED' : 'AVAILABLE'

const statusFilter = (status: UserCouponStatus | undefined, now: Date): SQL | undefined => {
  switch (status) {
    case undefined:
      return undefined
    case 'USED':
      return eq(userCoupons.status, 'USED')
    case 'AVAILABLE':
      return and(eq(userCoupons.status, 'AVAILABLE'), gt(userCoupons.expiresAt, now))
    case 'EXPIRED':
      return and(eq(userCoupons.status, 'AVAILABLE'), lte(userCoupons.expiresAt, now))
  }
}

export function createCouponCatalog(deps: CouponDeps) {
  const { db, dbRead } = deps
  // Two layers, each in memory in front of Redis (near caches, one pair per process). `recent` answers
  // every lookup and keeps hits and misses for MISSING_TTL_MS (so concurrent lookups of an unknown id wait
  // for one loader's answer instead of each asking MySQL); on expiry it asks `known`, which keeps
  // definitions only, for DEFINITION_TTL_MS: a known coupon costs MySQL nothing, and an issue request
  // costs no round trip before the claim script.
  const { recent, known } = deps.once('coupon-definitions', () => ({
    recent: createNearCache<{ coupon: CouponDefinition | null }>({
      shared: createCache({ ...deps, name: 'coupon-lookup', ttlMs: MISSING_TTL_MS }),
      bus: deps.bus,
      metrics: deps.metrics,
      memoryTtlMs: MISSING_TTL_MS,
    }),
    known: createNearCache<CouponDefinition>({
      shared: createCache({ ...deps, name: 'coupon-known', ttlMs: DEFINITION_TTL_MS }),
      bus: deps.bus,
      metrics: deps.metrics,
      memoryTtlMs: DEFINITION_TTL_MS,
    }),
  }))

  const findRow = async (id: number) => {
    const [row] = await db.select().from(coupons).where(eq(coupons.id, id)).limit(1)
    return row
  }

  /** The coupon's definition, or null when there is none; from Redis once looked up. */
  const definition = async (id: number): Promise<CouponDefinition | null> => {
    const key = String(id)
    const held = recent.peek(key)
    if (held !== undefined) return held.coupon
    const looked = await recent.get(key, async () => ({
      coupon: await known.get(key, async () => {
        const row = await findRow(id)
        return row ? toDefinition(row) : null
      }),
    }))
    return looked?.coupon ?? null
  }

  const requireDefinition = async (id: number): Promise<CouponDefinition> => {
    const found = await definition(id)
    if (!found) throw new AppError('COUPON_NOT_FOUND', `Coupon ${id} does not exist`)
    return found
  }

  return {
    definition,
    requireDefinition,

    async create(input: CreateCouponInput): Promise<Coupon> {
      const [created] = await db
        .insert(coupons)
        .values({
          name: input.name,
          type: input.type,
          value: input.value,
          minOrderAmount: input.minOrderAmount,
          totalQuantity: input.totalQuantity,
          issuedQuantity: 0,
          issueStartsAt: input.issueStartsAt ?? null,
          issueEndsAt: input.issueEndsAt ?? null,
          validDays: input.validDays,
          createdAt: new Date(),
        })
        .$returningId()
      const row = created && (await findRow(created.id))
      if (!row) throw new Error('inserted coupon could not be read back')
      try {
        // Someone may have asked for this id before it existed: drop the cached "no such coupon".
        await Promise.all([known.invalidate(String(row.id)), recent.invalidate(String(row.id))])
      } catch (error) {
        deps.logger.error('coupon definition cache invalidation failed', { couponId: row.id, error })
      }
      return toCoupon(toDefinition(row), row.totalQuantity - row.issuedQuantity)
    },

    /**
     * remainingQuantity is what issuing would still admit, from the same Redis state that decides issues
     * (so polling a hot campaign costs MySQL nothing); from MySQL when Redis cannot answer.
     */
    async get(id: number): Promise<Coupon> {
      const found = await requireDefinition(id)
      let remaining: number | null = null
      try {
        remaining = await remainingInRedis(deps, id)
      } catch (error) {
        deps.logger.warn('coupon issuing state unavailable, reading MySQL', { couponId: id, error })
      }
      if (remaining === null) {
        const [row] = await dbRead
          .select({ total: coupons.totalQuantity, issued: coupons.issuedQuantity })
          .from(coupons)
          .where(eq(coupons.id, id))
        remaining = row ? row.total - row.issued : 0
      }
      return toCoupon(found, remaining)
    },

    /** A user's coupons, newest first; from the primary, since users look right after being issued one. */
    async listForUser(userId: number, status: UserCouponStatus | undefined, now = new Date()) {
      const rows = await db
        .select({
          id: userCoupons.id,
          couponId: userCoupons.couponId,
          status: userCoupons.status,
          issuedAt: userCoupons.issuedAt,
          expiresAt: userCoupons.expiresAt,
          usedAt: userCoupons.usedAt,
          orderId: userCoupons.orderId,
          name: coupons.name,
          type: coupons.type,
          value: coupons.value,
          minOrderAmount: coupons.minOrderAmount,
        })
        .from(userCoupons)
        .innerJoin(coupons, eq(coupons.id, userCoupons.couponId))
        .where(and(eq(userCoupons.userId, userId), statusFilter(status, now)))
        .orderBy(desc(userCoupons.id))
      return rows.map(
        (row): UserCoupon => ({
          userCouponId: row.id,
          couponId: row.couponId,
          name: row.name,
          type: row.type,
          value: row.value,
          minOrderAmount: row.minOrderAmount,
          status: viewStatus(row, now),
          issuedAt: row.issuedAt.toISOString(),
          expiresAt: row.expiresAt.toISOString(),
          usedAt: row.usedAt?.toISOString() ?? null,
          orderId: row.orderId,
        }),
      )
    },
  }
}

export type CouponCatalog = ReturnType<typeof createCouponCatalog>
