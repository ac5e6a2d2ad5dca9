import { type CouponDeps, createCouponCatalog } from '../../shared/coupons/coupons'
import { routeApp } from '../../shared/http/route'
import { route } from './route'

export default function createUserCouponsListApp(deps: CouponDeps) {
  const catalog = createCouponCatalog(deps)
  return routeApp(route, deps, async ({ params, query }, c) => {
    return c.json({ items: await catalog.listForUser(params.userId, query.status) })
  })
}
