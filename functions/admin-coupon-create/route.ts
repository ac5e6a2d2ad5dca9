import { CouponSchema, CreateCouponBody } from '../../shared/coupons/schemas'
import { defineRoute } from '../../shared/http/route'

export const route = defineRoute({
  method: 'POST',
  path: '/v1/admin/coupons',
  summary: 'Create a coupon campaign (FIXED won off, or PERCENT off) with an optional issuance window',
  tag: 'Admin',
  access: 'admin',
  body: CreateCouponBody,
  response: { status: 201, description: 'The created coupon', schema: CouponSchema },
  errors: [],
  example: {
    body: {
      name: '3,000 won off',
      type: 'FIXED',
      value: 3_000,
      minOrderAmount: 20_000,
      totalQuantity: 100,
      issueStartsAt: '2026-12-01T00:00:00+09:00',
      issueEndsAt: '2026-12-08T00:00:00+09:00',
      validDays: 30,
    },
    response: {
      id: 1,
      name: '3,000 won off',
      type: 'FIXED',
      value: 3_000,
      minOrderAmount: 20_000,
      totalQuantity: 100,
      remainingQuantity: 100,
      issueStartsAt: '2026-11-30T15:00:00.000Z',
      issueEndsAt: '2026-12-07T15:00:00.000Z',
      validDays: 30,
    },
  },
})
