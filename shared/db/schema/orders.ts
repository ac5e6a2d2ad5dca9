import { index, mysqlEnum, mysqlTable } from 'drizzle-orm/mysql-core'
import { id, timestamp, won } from './columns'

export const ORDER_STATUSES = ['PAID', 'CANCELLED'] as const

export const orders = mysqlTable(
  'orders',
  {
    id: id('id').autoincrement().primaryKey(),
    userId: id('user_id').notNull(),
    status: mysqlEnum('status', ORDER_STATUSES).notNull(),
    subtotal: won('subtotal').notNull(),
    discount: won('discount').notNull(),
    total: won('total').notNull(),
    userCouponId: id('user_coupon_id'),
    createdAt: timestamp('created_at').notNull(),
    paidAt: timestamp('paid_at').notNull(),
    cancelledAt: timestamp('cancelled_at'),
  },
  (t) => [index('orders_user_id_id').on(t.userId, t.id)],
)
