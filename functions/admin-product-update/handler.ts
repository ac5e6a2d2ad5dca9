import { type CatalogDeps, createCatalog } from '../../shared/catalog/products'
import { routeApp } from '../../shared/http/route'
import { route } from './route'

export default function createAdminProductUpdateApp(deps: CatalogDeps) {
  const catalog = createCatalog(deps)
  return routeApp(route, deps, async ({ params, body }, c) =>
    c.json(await catalog.update(params.productId, body)),
  )
}
