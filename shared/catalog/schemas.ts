import * as v from 'valibot'
import { Int } from '../http/schemas'
import { MAX_STOCK } from './products'

const IsoTime = v.pipe(v.string(), v.isoTimestamp())

export const ProductSummarySchema = v.object({
  id: v.number(),
  name: v.string(),
  price: v.number(),
  stock: v.number(),
})

export const ProductSchema = v.object({
  id: v.number(),
  name: v.string(),
  description: v.string(),
  price: v.number(),
  stock: v.number(),
  createdAt: IsoTime,
  updatedAt: IsoTime,
})

export const ProductPageSchema = v.object({
  items: v.array(ProductSummarySchema),
  nextCursor: v.nullable(v.string()),
})

const Name = v.pipe(v.string(), v.trim(), v.minLength(1), v.maxLength(200))
const Description = v.pipe(v.string(), v.maxLength(2000))
const Price = Int(1, 100_000_000)

export const CreateProductBody = v.strictObject({
  name: Name,
  description: v.optional(Description),
  price: Price,
  stock: Int(0, 1_000_000),
})

export const UpdateProductBody = v.pipe(
  v.strictObject({
    name: v.optional(Name),
    description: v.optional(Description),
    price: v.optional(Price),
    stockAdjustment: v.optional(
      v.pipe(
        Int(-MAX_STOCK, MAX_STOCK),
        v.check((n) => n !== 0, 'must not be 0'),
      ),
    ),
  }),
  v.check((body) => Object.keys(body).length > 0, 'must change at least one field'),
)
