import * as v from 'valibot'
import { LEDGER_TYPES } from '../../shared/db/schema'
import { defineRoute } from '../../shared/http/route'
import { idParams, pageQuery } from '../../shared/http/schemas'

export const LedgerEntrySchema = v.object({
  id: v.number(),
  type: v.picklist(LEDGER_TYPES),
  amount: v.number(),
  balanceAfter: v.number(),
  orderId: v.nullable(v.number()),
  createdAt: v.pipe(v.string(), v.isoTimestamp()),
})

export const route = defineRoute({
  method: 'GET',
  path: '/v1/users/:userId/balance/history',
  summary: "A user's balance changes, newest first (amount is signed)",
  tag: 'Balance',
  access: 'self-or-admin',
  params: idParams('userId'),
  query: pageQuery,
  response: {
    status: 200,
    description: 'One page of ledger entries',
    schema: v.object({ items: v.array(LedgerEntrySchema), nextCursor: v.nullable(v.string()) }),
  },
  errors: ['FORBIDDEN'],
  example: {
    params: { userId: 1 },
    query: { limit: 2 },
    response: {
      items: [
        {
          id: 2,
          type: 'PAYMENT',
          amount: -48_000,
          balanceAfter: 52_000,
          orderId: 1,
          createdAt: '2026-11-28T11:36:17.123Z',
        },
        {
          id: 1,
          type: 'CHARGE',
          amount: 100_000,
          balanceAfter: 100_000,
          orderId: null,
          createdAt: '2026-11-28T11:30:00.000Z',
        },
      ],
      nextCursor: null,
    },
  },
})
