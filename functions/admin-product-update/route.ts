import { ProductSchema, UpdateProductBody } from '../../shared/catalog/schemas'
import { defineRoute } from '../../shared/http/route'
import { idParams } from '../../shared/http/schemas'

export const route = defineRoute({
  method: 'PATCH',
  path: '/v1/admin/products/:productId',
  summary: 'Change a product; stockAdjustment adds to stock atomically',
  tag: 'Admin',
  access: 'admin',
  params: idParams('productId'),
  body: UpdateProductBody,
  response: { status: 200, description: 'The product after the change', schema: ProductSchema },
  errors: ['PRODUCT_NOT_FOUND', 'INSUFFICIENT_STOCK'],
})
