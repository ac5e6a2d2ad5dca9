import { EXAMPLE_ISSUED_COUPON, UserCouponListSchema, UserCouponsQuery } from '../../shared/coupons/schemas'
import { defineRoute } from '../../shared/http/route'
import { idParams } from '../../shared/http/schemas'

export const route = defineRoute({
  method: 'GET',
  path: '/v1/users/:userId/coupons',
  summary: "A user's coupons, newest first; EXPIRED once expiresAt has passed unused",
  tag: 'Coupons',
  access: 'self-or-admin',
  params: idParams('userId'),
  query: UserCouponsQuery,
  response: { status: 200, description: "The user's coupons", schema: UserCouponListSchema },
  errors: ['FORBIDDEN'],
  example: {
    params: { userId: 1 },
    query: { status: 'AVAILABLE' },
    response: {
      items: [{ ...EXAMPLE_ISSUED_COUPON, usedAt: null, orderId: null }],
    },
  },
})
