import { ProductPageSchema } from '../../shared/catalog/schemas'
import { defineRoute } from '../../shared/http/route'
import { pageQuery } from '../../shared/http/schemas'

export const route = defineRoute({
  method: 'GET',
  path: '/v1/products',
  summary: 'List products by id',
  tag: 'Products',
  access: 'public',
  query: pageQuery,
  response: { status: 200, description: 'A page of products', schema: ProductPageSchema },
  errors: [],
})
