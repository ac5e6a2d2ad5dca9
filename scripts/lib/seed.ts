import { sql } from 'drizzle-orm'
import type { Db } from '../../shared/db/client'
import { coupons, products } from '../../shared/db/schema'

const DEMO_PRODUCTS = [
  {
    name: 'Americano beans 1 kg',
    description: 'Medium roast, Ethiopia and Brazil blend',
    price: 24_000,
    stock: 120,
  },
  { name: 'Hand drip kettle', description: '0.9 L gooseneck, stainless steel', price: 39_000, stock: 35 },
  { name: 'Ceramic mug', description: '350 ml, dishwasher safe', price: 12_000, stock: 300 },
  {
    name: 'Limited edition grinder',
    description: 'Flash-sale item: only a few in stock',
    price: 189_000,
    stock: 5,
  },
]

const DEMO_COUPONS = [
  {
    name: '3,000 won off',
    type: 'FIXED' as const,
    value: 3_000,
    minOrderAmount: 20_000,
    totalQuantity: 100,
    validDays: 30,
  },
  {
    name: '10% off, first 30',
    type: 'PERCENT' as const,
    value: 10,
    minOrderAmount: 0,
    totalQuantity: 30,
    validDays: 7,
  },
]

export type Seeded = {
  products: Array<{ id: number; name: string; price: number; stock: number }>
  coupons: Array<{ id: number; name: string; totalQuantity: number }>
}

/** Demo data for a new database; does nothing (returns null) when any product exists. */
export async function seedWhenEmpty(db: Db): Promise<Seeded | null> {
  return db.transaction(async (tx) => {
    const [existing] = await tx.select({ n: sql<number>`COUNT(*)` }).from(products)
    if (Number(existing?.n ?? 0) > 0) return null
    const now = new Date()
    const seeded: Seeded = { products: [], coupons: [] }
    for (const p of DEMO_PRODUCTS) {
      const [row] = await tx
        .insert(products)
        .values({ ...p, initialStock: p.stock, createdAt: now, updatedAt: now })
        .$returningId()
      if (row) seeded.products.push({ id: row.id, name: p.name, price: p.price, stock: p.stock })
    }
    for (const c of DEMO_COUPONS) {
      const [row] = await tx
        .insert(coupons)
        .values({ ...c, issueStartsAt: null, issueEndsAt: null, createdAt: now })
        .$returningId()
      if (row) seeded.coupons.push({ id: row.id, name: c.name, totalQuantity: c.totalQuantity })
    }
    return seeded
  })
}

export function describeSeed(seeded: Seeded): string {
  const lines = ['Seeded demo data:']
  for (const p of seeded.products)
    lines.push(`  product ${p.id}: ${p.name}, ${p.price} won, ${p.stock} in stock`)
  for (const c of seeded.coupons) lines.push(`  coupon  ${c.id}: ${c.name} (${c.totalQuantity} to issue)`)
  return lines.join('\n')
}
