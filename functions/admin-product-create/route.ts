import { CreateProductBody, ProductSchema } from '../../shared/catalog/schemas'
import { defineRoute } from '../../shared/http/route'

export const route = defineRoute({
  method: 'POST',
  path: '/v1/admin/products',
  summary: 'Create a product',
  tag: 'Admin',
  access: 'admin',
  body: CreateProductBody,
  response: { status: 201, description: 'The created product', schema: ProductSchema },
  errors: [],
})
