import { routeApp } from '../../shared/http/route'
import { createPopularProducts, type PopularDeps } from '../../shared/stats/popular'
import { route } from './route'

/** `now` lets tests look at a business day of their own; the service always uses the clock. */
export default function createProductPopularApp(deps: PopularDeps, options: { now?: () => Date } = {}) {
  const popular = createPopularProducts(deps, options)
  return routeApp(route, deps, async (_input, c) => c.json(await popular.get()))
}
