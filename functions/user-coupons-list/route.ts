import { UserCouponListSchema, UserCouponsQuery } from '../../shared/coupons/schemas'
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
      items: [
        {
          userCouponId: 19,
          couponId: 2,
          name: '10% off, first 30',
          type: 'PERCENT',
          value: 10,
          minOrderAmount: 0,
          status: 'AVAILABLE',
          issuedAt: '2026-11-28T11:36:17.123Z',
          expiresAt: '2026-12-05T11:36:17.123Z',
          usedAt: null,
          orderId: null,
        },
      ],
    },
  },
})
