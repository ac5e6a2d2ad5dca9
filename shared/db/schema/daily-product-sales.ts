import { date, index, int, mysqlTable, primaryKey } from 'drizzle-orm/mysql-core'
import { id, won } from './columns'

/** Per business day, per product: what the statistics consumer has applied from order events. */
export const dailyProductSales = mysqlTable(
  'daily_product_sales',
  {
    day: date('day', { mode: 'string' }).notNull(),
    productId: id('product_id').notNull(),
    soldQuantity: int('sold_quantity').notNull().default(0),
    revenue: won('revenue').notNull().default(0),
  },
  (t) => [
    primaryKey({ columns: [t.day, t.productId] }),
    index('daily_product_sales_product').on(t.productId),
  ],
)
