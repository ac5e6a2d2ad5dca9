import { CouponSchema } from '../../shared/coupons/schemas'
import { defineRoute } from '../../shared/http/route'
import { idParams } from '../../shared/http/schemas'

export const route = defineRoute({
  method: 'GET',
  path: '/v1/coupons/:couponId',
  summary: 'A coupon campaign with how many coupons are left to issue',
  tag: 'Coupons',
  access: 'public',
  params: idParams('couponId'),
  response: { status: 200, description: 'The coupon', schema: CouponSchema },
  errors: ['COUPON_NOT_FOUND'],
  example: {
    params: { couponId: 2 },
    response: {
      id: 2,
      name: '10% off, first 30',
      type: 'PERCENT',
      value: 10,
      minOrderAmount: 0,
      totalQuantity: 30,
      remainingQuantity: 12,
      issueStartsAt: null,
      issueEndsAt: null,
      validDays: 7,
    },
  },
})
