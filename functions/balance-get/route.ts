import * as v from 'valibot'
import { defineRoute } from '../../shared/http/route'
import { idParams } from '../../shared/http/schemas'

export const BalanceSchema = v.object({
  userId: v.number(),
  balance: v.number(),
  updatedAt: v.pipe(v.string(), v.isoTimestamp()),
})

export const route = defineRoute({
  method: 'GET',
  path: '/v1/users/:userId/balance',
  summary: "A user's balance (0 before the first charge)",
  tag: 'Balance',
  access: 'self-or-admin',
  params: idParams('userId'),
  response: { status: 200, description: 'The balance', schema: BalanceSchema },
  errors: ['FORBIDDEN'],
  example: {
    params: { userId: 1 },
    response: { userId: 1, balance: 52_000, updatedAt: '2026-11-28T11:36:17.123Z' },
  },
})
