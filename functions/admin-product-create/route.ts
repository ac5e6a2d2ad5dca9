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
  example: {
    body: { name: 'Ceramic mug', description: '350 ml, dishwasher safe', price: 12_000, stock: 300 },
    response: {
      id: 3,
      name: 'Ceramic mug',
      description: '350 ml, dishwasher safe',
      price: 12_000,
      stock: 300,
      createdAt: '2026-11-20T01:00:00.000Z',
      updatedAt: '2026-11-20T01:00:00.000Z',
    },
  },
})
