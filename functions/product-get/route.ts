import { ProductSchema } from '../../shared/catalog/schemas'
import { defineRoute } from '../../shared/http/route'
import { idParams } from '../../shared/http/schemas'

export const route = defineRoute({
  method: 'GET',
  path: '/v1/products/:productId',
  summary: 'Get one product with its current stock',
  tag: 'Products',
  access: 'public',
  params: idParams('productId'),
  response: { status: 200, description: 'The product', schema: ProductSchema },
  errors: ['PRODUCT_NOT_FOUND'],
  example: {
    params: { productId: 1 },
    response: {
      id: 1,
      name: 'Americano beans 1 kg',
      description: 'Medium roast, Ethiopia and Brazil blend',
      price: 24_000,
      stock: 118,
      createdAt: '2026-11-20T01:00:00.000Z',
      updatedAt: '2026-11-28T11:36:17.123Z',
    },
  },
})
