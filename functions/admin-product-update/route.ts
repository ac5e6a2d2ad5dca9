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
  example: {
    params: { productId: 4 },
    body: { price: 179_000, stockAdjustment: 10 },
    response: {
      id: 4,
      name: 'Limited edition grinder',
      description: 'Flash-sale item: only a few in stock',
      price: 179_000,
      stock: 15,
      createdAt: '2026-11-20T01:00:00.000Z',
      updatedAt: '2026-11-28T11:36:17.123Z',
    },
  },
})
