import { type CatalogDeps, createCatalog } from '../../shared/catalog/products'
import { routeApp } from '../../shared/http/route'
import { route } from './route'

export default function createAdminProductCreateApp(deps: CatalogDeps) {
  const catalog = createCatalog(deps)
  return routeApp(route, deps, async ({ body }, c) => {
    const product = await catalog.create(body)
    c.header('Location', `/v1/products/${product.id}`)
    return c.json(product, 201)
  })
}
