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
})
