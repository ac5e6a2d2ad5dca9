import { type CatalogDeps, createCatalog } from '../../shared/catalog/products'
import { routeApp } from '../../shared/http/route'
import { route } from './route'

export default function createProductGetApp(deps: CatalogDeps) {
  const catalog = createCatalog(deps)
  return routeApp(route, deps, async ({ params }, c) => c.json(await catalog.get(params.productId)))
}
