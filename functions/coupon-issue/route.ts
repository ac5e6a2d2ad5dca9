import { EXAMPLE_ISSUED_COUPON, IssuedCouponSchema } from '../../shared/coupons/schemas'
import { defineRoute } from '../../shared/http/route'
import { idParams } from '../../shared/http/schemas'

export const route = defineRoute({
  method: 'POST',
  path: '/v1/coupons/:couponId/issue',
  summary: 'Issue one coupon to the caller: first come, first served, one per user',
  tag: 'Coupons',
  access: 'user',
  params: idParams('couponId'),
  idempotent: true,
  response: { status: 201, description: 'The coupon issued to the caller', schema: IssuedCouponSchema },
  errors: [
    'COUPON_NOT_FOUND',
    'COUPON_SOLD_OUT',
    'COUPON_ALREADY_ISSUED',
    'COUPON_NOT_ISSUABLE',
    'IDEMPOTENCY_KEY_IN_USE',
    'IDEMPOTENCY_KEY_REUSED',
  ],
  example: {
    params: { couponId: 2 },
    response: EXAMPLE_ISSUED_COUPON,
  },
})
