import type { CouponDeps } from '../../shared/coupons/coupons'
import { createCouponIssuer } from '../../shared/coupons/issue'
import { routeApp } from '../../shared/http/route'
import { route } from './route'

export default function createCouponIssueApp(deps: CouponDeps) {
  const issuer = createCouponIssuer(deps)
  return routeApp(route, deps, ({ params, auth, record }) =>
    issuer.issue({ couponId: params.couponId, userId: auth.userId }, record),
  )
}
