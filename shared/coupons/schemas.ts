import * as v from 'valibot'
import { COUPON_TYPES } from '../db/schema'
import { Int } from '../http/schemas'

export const MAX_FIXED_VALUE = 10_000_000
export const MAX_PERCENT_VALUE = 100
export const MAX_TOTAL_QUANTITY = 10_000_000
export const MAX_VALID_DAYS = 365
/** No balance can exceed 1,000,000,000 won, so no payable order could meet a higher minimum. */
export const MAX_MIN_ORDER_AMOUNT = 1_000_000_000

const ISO_UTC_OR_OFFSET =
  /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,3}))?(?:Z|([+-])(\d{2}):(\d{2}))$/

/**
 * An ISO-8601 timestamp with a zone (`Z` or `+09:00`), as a Date. Stricter than valibot's isoTimestamp on
 * purpose: JS Date silently rolls `02-30` over to March and accepts year 0, which MySQL's DATETIME cannot
 * hold; both are a 400 here, never a wrong date or a 500.
 */
export function parseIsoTimestamp(text: string): Date | null {
  const m = ISO_UTC_OR_OFFSET.exec(text)
  if (!m) return null
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ]
  const millis = Number((m[7] ?? '0').padEnd(3, '0'))
  const local = new Date(Date.UTC(year, month - 1, day, hour, minute, second, millis))
  const exact =
    local.getUTCFullYear() === year &&
    local.getUTCMonth() === month - 1 &&
    local.getUTCDate() === day &&
    local.getUTCHours() === hour &&
    local.getUTCMinutes() === minute &&
    local.getUTCSeconds() === second
  if (!exact) return null
  const offsetHours = Number(m[9] ?? 0)
  const offsetMinutes = Number(m[10] ?? 0)
  if (offsetHours > 23 || offsetMinutes > 59) return null
  const offset = (m[8] === '-' ? -1 : 1) * (offsetHours * 60 + offsetMinutes) * 60_000
  const date = new Date(local.getTime() - offset)
  const utcYear = date.getUTCFullYear()
  return utcYear >= 2000 && utcYear <= 9998 ? date : null
}

const Timestamp = v.pipe(
  v.string(),
  v.description(
    'An ISO-8601 timestamp with a time zone, e.g. 2026-11-28T11:36:17.123Z or 2026-11-28T20:36:17+09:00',
  ),
  v.maxLength(40),
  v.check(
    (text) => parseIsoTimestamp(text) !== null,
    'must be an ISO-8601 timestamp with a time zone, e.g. 2026-11-28T11:36:17.123Z, in years 2000..9998',
  ),
  v.transform((text) => parseIsoTimestamp(text) as Date),
)

export const CreateCouponBody = v.pipe(
  v.strictObject({
    name: v.pipe(v.string(), v.trim(), v.minLength(1), v.maxLength(200)),
    type: v.picklist(COUPON_TYPES),
    value: Int(1, MAX_FIXED_VALUE),
    totalQuantity: Int(1, MAX_TOTAL_QUANTITY),
    minOrderAmount: v.optional(Int(0, MAX_MIN_ORDER_AMOUNT), 0),
    issueStartsAt: v.optional(Timestamp),
    issueEndsAt: v.optional(Timestamp),
    validDays: Int(1, MAX_VALID_DAYS),
  }),
  v.forward(
    v.partialCheck(
      [['type'], ['value']],
      (body) => body.type !== 'PERCENT' || body.value <= MAX_PERCENT_VALUE,
      `must be at most ${MAX_PERCENT_VALUE} for a PERCENT coupon`,
    ),
    ['value'],
  ),
  v.forward(
    v.partialCheck(
      [['issueStartsAt'], ['issueEndsAt']],
      (body) =>
        body.issueStartsAt === undefined ||
        body.issueEndsAt === undefined ||
        body.issueEndsAt.getTime() > body.issueStartsAt.getTime(),
      'must be after issueStartsAt',
    ),
    ['issueEndsAt'],
  ),
)
export type CreateCouponInput = v.InferOutput<typeof CreateCouponBody>

const IsoTime = v.pipe(v.string(), v.isoTimestamp())
const CouponType = v.picklist(COUPON_TYPES)

export const CouponSchema = v.object({
  id: v.number(),
  name: v.string(),
  type: CouponType,
  value: v.number(),
  minOrderAmount: v.number(),
  totalQuantity: v.number(),
  remainingQuantity: v.number(),
  issueStartsAt: v.nullable(IsoTime),
  issueEndsAt: v.nullable(IsoTime),
  validDays: v.number(),
})

/** The issue response (docs/api.md) is a user coupon at the moment it is issued: AVAILABLE, never used. */
export const IssuedCouponSchema = v.object({
  userCouponId: v.number(),
  couponId: v.number(),
  name: v.string(),
  type: CouponType,
  value: v.number(),
  minOrderAmount: v.number(),
  status: v.literal('AVAILABLE'),
  issuedAt: IsoTime,
  expiresAt: IsoTime,
})

export const UserCouponSchema = v.object({
  ...IssuedCouponSchema.entries,
  status: v.picklist(['AVAILABLE', 'USED', 'EXPIRED']),
  usedAt: v.nullable(IsoTime),
  orderId: v.nullable(v.number()),
})

export const UserCouponListSchema = v.object({ items: v.array(UserCouponSchema) })

export const USER_COUPON_VIEW_STATUSES = ['AVAILABLE', 'USED', 'EXPIRED'] as const

export const UserCouponsQuery = v.strictObject({
  status: v.optional(v.picklist(USER_COUPON_VIEW_STATUSES)),
})

/** The coupon the API reference shows issued (functions' route examples): the second demo coupon. */
export const EXAMPLE_ISSUED_COUPON = {
  userCouponId: 19,
  couponId: 2,
  name: '10% off, first 30',
  type: 'PERCENT' as const,
  value: 10,
  minOrderAmount: 0,
  status: 'AVAILABLE' as const,
  issuedAt: '2026-11-28T11:36:17.123Z',
  expiresAt: '2026-12-05T11:36:17.123Z',
}
