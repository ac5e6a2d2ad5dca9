import type { CouponDeps } from '../../shared/coupons/coupons'
import { createCouponIssuer } from '../../shared/coupons/issue'
import { routeApp } from '../../shared/http/route'
import { idempotentResponse, readIdempotencyKey } from '../../shared/idempotency/idempotency'
import { route } from './route'

export default function createCouponIssueApp(deps: CouponDeps) {
  const issuer = createCouponIssuer(deps)
  return routeApp(route, deps.config, async ({ params, auth }, c) => {
    const result = await issuer.issue({
      couponId: params.couponId,
      userId: auth.userId,
      idempotencyKey: readIdempotencyKey(c),
      method: c.req.method,
      path: c.req.path,
    })
    return idempotentResponse(c, result)
  })
}
