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
})
