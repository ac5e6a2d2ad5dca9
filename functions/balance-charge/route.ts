import * as v from 'valibot'
import { defineRoute } from '../../shared/http/route'
import { Int, idParams } from '../../shared/http/schemas'

export const MAX_CHARGE = 10_000_000

export const ChargeBody = v.strictObject({ amount: Int(1, MAX_CHARGE) })

const BalanceSchema = v.object({
  userId: v.number(),
  balance: v.number(),
  updatedAt: v.pipe(v.string(), v.isoTimestamp()),
})

export const route = defineRoute({
  method: 'POST',
  path: '/v1/users/:userId/balance/charge',
  summary: 'Add money to a balance (never above 1,000,000,000 won); concurrent charges all apply',
  tag: 'Balance',
  access: 'self-or-admin',
  params: idParams('userId'),
  body: ChargeBody,
  idempotent: true,
  response: { status: 200, description: 'The balance after the charge', schema: BalanceSchema },
  errors: ['FORBIDDEN', 'BALANCE_LIMIT_EXCEEDED', 'IDEMPOTENCY_KEY_IN_USE', 'IDEMPOTENCY_KEY_REUSED'],
  example: {
    params: { userId: 1 },
    body: { amount: 100_000 },
    response: { userId: 1, balance: 100_000, updatedAt: '2026-11-28T11:30:00.000Z' },
  },
})
