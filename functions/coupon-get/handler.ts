import { type CouponDeps, createCouponCatalog } from '../../shared/coupons/coupons'
import { routeApp } from '../../shared/http/route'
import { route } from './route'

export default function createCouponGetApp(deps: CouponDeps) {
  const catalog = createCouponCatalog(deps)
  return routeApp(route, deps, async ({ params }, c) => c.json(await catalog.get(params.couponId)))
}
