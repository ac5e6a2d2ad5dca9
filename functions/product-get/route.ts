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
})
