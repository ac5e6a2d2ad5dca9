import { type CatalogDeps, createCatalog } from '../../shared/catalog/products'
import { routeApp } from '../../shared/http/route'
import { toPage } from '../../shared/http/schemas'
import { route } from './route'

export default function createProductListApp(deps: CatalogDeps) {
  const catalog = createCatalog(deps)
  return routeApp(route, deps, async ({ query }, c) => {
    const rows = await catalog.list(query)
    return c.json(
      toPage(
        rows,
        query.limit,
        (row) => row.id,
        (row) => row,
      ),
    )
  })
}
