import { sql } from 'drizzle-orm'
import { bigint, check, int, mysqlTable, varchar } from 'drizzle-orm/mysql-core'
import { id, timestamp, won } from './columns'

export const products = mysqlTable(
  'products',
  {
    id: id('id').autoincrement().primaryKey(),
    name: varchar('name', { length: 200 }).notNull(),
    description: varchar('description', { length: 2000 }).notNull().default(''),
    price: won('price').notNull(),
    stock: int('stock').notNull(),
    // initialStock and stockAdjustments make the stock invariant (docs/invariants.md) checkable from the table itself:
    // stock = initialStock + stockAdjustments - sum of quantities in PAID orders.
    initialStock: int('initial_stock').notNull(),
    stockAdjustments: bigint('stock_adjustments', { mode: 'number' }).notNull().default(0),
    createdAt: timestamp('created_at').notNull(),
    updatedAt: timestamp('updated_at').notNull(),
  },
  (t) => [
    check('products_stock_non_negative', sql`${t.stock} >= 0`),
    check('products_price_positive', sql`${t.price} > 0`),
  ],
)

export type ProductRow = typeof products.$inferSelect
