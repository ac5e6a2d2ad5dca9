import * as v from 'valibot'
import { defineRoute } from '../../shared/http/route'

const BusinessDate = v.pipe(v.string(), v.isoDate())

export const PopularProductsSchema = v.object({
  from: BusinessDate,
  to: BusinessDate,
  items: v.array(
    v.object({
      rank: v.number(),
      productId: v.number(),
      name: v.string(),
      price: v.number(),
      soldQuantity: v.number(),
    }),
  ),
})

export const route = defineRoute({
  method: 'GET',
  path: '/v1/products/popular',
  summary: 'The 5 best-selling products of the current business day and the two before it',
  tag: 'Products',
  access: 'public',
  query: v.strictObject({}),
  response: {
    status: 200,
    description:
      'Up to 5 products by units sold in paid orders (cancellations excluded); ties: more revenue, then lower id. ' +
      '`from` and `to` are the business dates covered (YYYY-MM-DD in BUSINESS_TIMEZONE). Cached for up to ' +
      'POPULAR_CACHE_TTL_SECONDS; while the statistics store is down, the last good list (or an empty one).',
    schema: PopularProductsSchema,
  },
  errors: [],
  example: {
    response: {
      from: '2026-11-26',
      to: '2026-11-28',
      items: [
        { rank: 1, productId: 3, name: 'Ceramic mug', price: 12_000, soldQuantity: 41 },
        { rank: 2, productId: 1, name: 'Americano beans 1 kg', price: 24_000, soldQuantity: 17 },
      ],
    },
  },
})
