import { type CouponDeps, createCouponCatalog } from '../../shared/coupons/coupons'
import { routeApp } from '../../shared/http/route'
import { route } from './route'

export default function createAdminCouponCreateApp(deps: CouponDeps) {
  const catalog = createCouponCatalog(deps)
  return routeApp(route, deps, async ({ body }, c) => {
    const coupon = await catalog.create(body)
    c.header('Location', `/v1/coupons/${coupon.id}`)
    return c.json(coupon, 201)
  })
}
