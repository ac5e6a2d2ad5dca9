import { ProductPageSchema } from '../../shared/catalog/schemas'
import { defineRoute } from '../../shared/http/route'
import { encodeCursor, pageQuery } from '../../shared/http/schemas'

export const route = defineRoute({
  method: 'GET',
  path: '/v1/products',
  summary: 'List products by id',
  tag: 'Products',
  access: 'public',
  query: pageQuery,
  response: { status: 200, description: 'A page of products', schema: ProductPageSchema },
  errors: [],
  example: {
    query: { limit: 2 },
    response: {
      items: [
        { id: 1, name: 'Americano beans 1 kg', price: 24_000, stock: 120 },
        { id: 2, name: 'Hand drip kettle', price: 39_000, stock: 35 },
      ],
      nextCursor: encodeCursor(2),
    },
  },
})
