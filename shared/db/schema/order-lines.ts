import { index, int, mysqlTable, primaryKey, varchar } from 'drizzle-orm/mysql-core'
import { id, won } from './columns'

export const orderLines = mysqlTable(
  'order_lines',
  {
    orderId: id('order_id').notNull(),
    productId: id('product_id').notNull(),
    /** The product's name and price at order time. */
    name: varchar('name', { length: 200 }).notNull(),
    unitPrice: won('unit_price').notNull(),
    quantity: int('quantity').notNull(),
    lineTotal: won('line_total').notNull(),
  },
  (t) => [primaryKey({ columns: [t.orderId, t.productId] }), index('order_lines_product_id').on(t.productId)],
)
