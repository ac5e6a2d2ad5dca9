import { describe, expect, it } from 'vitest'
import { call, expectProblemShape, tokenFor, uniqueUserId, useTestApp } from '../../shared/testing/harness'
import createBalanceChargeApp from '../balance-charge/handler'
import createBalanceGetApp from './handler'

const t = useTestApp([createBalanceGetApp, createBalanceChargeApp])

const get = async (userId: number, token?: string) =>
  call(t.app, 'GET', `/v1/users/${userId}/balance`, { token: token ?? (await tokenFor(t.deps, userId)) })

describe('GET /v1/users/:userId/balance', () => {
  it('is 0 before the first charge, then shows each charge', async () => {
    const userId = uniqueUserId()
    const first = await get(userId)
    expect(first.status).toBe(200)
    expect(Object.keys(first.body as object)).toEqual(['userId', 'balance', 'updatedAt'])
    expect(first.body).toMatchObject({ userId, balance: 0 })
    const charged = await call(t.app, 'POST', `/v1/users/${userId}/balance/charge`, {
      token: await tokenFor(t.deps, userId),
      body: { amount: 12_345 },
    })
    expect(charged.status).toBe(200)
    const after = await get(userId)
    expect(after.body).toEqual(charged.body)
  })

  it("refuses another user's balance (403), lets an admin read it, and needs a token (401)", async () => {
    const userId = uniqueUserId()
    expectProblemShape(await get(userId, await tokenFor(t.deps, uniqueUserId())), 403, 'FORBIDDEN')
    const admin = await get(userId, await tokenFor(t.deps, uniqueUserId(), 'admin'))
    expect(admin.body).toMatchObject({ userId, balance: 0 })
    expectProblemShape(await call(t.app, 'GET', `/v1/users/${userId}/balance`), 401, 'UNAUTHENTICATED')
    expectProblemShape(
      await call(t.app, 'GET', `/v1/users/${userId}/balance`, { headers: { Authorization: 'Bearer nope' } }),
      401,
      'UNAUTHENTICATED',
    )
    const expired = await tokenFor(t.deps, userId, 'user', -10)
    expectProblemShape(await get(userId, expired), 401, 'UNAUTHENTICATED')
  })

  it.each(['0', '-1', 'abc', '1e3', '1.5', '12345678901234567890', '01'])(
    'answers 400 VALIDATION_FAILED for user id %s',
    async (raw) => {
      const token = await tokenFor(t.deps, uniqueUserId(), 'admin')
      const res = await call(t.app, 'GET', `/v1/users/${raw}/balance`, { token })
      const problem = expectProblemShape(res, 400, 'VALIDATION_FAILED')
      expect(problem.errors).toEqual([expect.objectContaining({ path: 'userId' })])
    },
  )
})
