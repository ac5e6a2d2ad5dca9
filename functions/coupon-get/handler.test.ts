import { describe, expect, it } from 'vitest'
import { call, expectProblemShape, tokenFor, uniqueUserId, useTestApp } from '../../shared/testing/harness'
import createAdminCouponCreateApp from '../admin-coupon-create/handler'
import createCouponIssueApp from '../coupon-issue/handler'
import createCouponGetApp from './handler'

const t = useTestApp([createAdminCouponCreateApp, createCouponGetApp, createCouponIssueApp])

async function createCoupon(body: Record<string, unknown>) {
  const res = await call(t.app, 'POST', '/v1/admin/coupons', {
    token: await tokenFor(t.deps, uniqueUserId(), 'admin'),
    body,
  })
  expect(res.status).toBe(201)
  return (res.body as { id: number }).id
}

describe('GET /v1/coupons/:couponId', () => {
  it('is public and shows the coupon with its remaining quantity, in documented field order', async () => {
    const id = await createCoupon({
      name: 'Flash 10%',
      type: 'PERCENT',
      value: 10,
      totalQuantity: 3,
      minOrderAmount: 5_000,
      issueStartsAt: '2020-01-01T00:00:00Z',
      issueEndsAt: '2099-01-01T00:00:00Z',
      validDays: 7,
    })
    const res = await call(t.app, 'GET', `/v1/coupons/${id}`)
    expect(res.status).toBe(200)
    expect(Object.keys(res.body as object)).toEqual([
      'id',
      'name',
      'type',
      'value',
      'minOrderAmount',
      'totalQuantity',
      'remainingQuantity',
      'issueStartsAt',
      'issueEndsAt',
      'validDays',
    ])
    expect(res.body).toEqual({
      id,
      name: 'Flash 10%',
      type: 'PERCENT',
      value: 10,
      minOrderAmount: 5_000,
      totalQuantity: 3,
      remainingQuantity: 3,
      issueStartsAt: '2020-01-01T00:00:00.000Z',
      issueEndsAt: '2099-01-01T00:00:00.000Z',
      validDays: 7,
    })
    for (let left = 2; left >= 0; left--) {
      const issued = await call(t.app, 'POST', `/v1/coupons/${id}/issue`, {
        token: await tokenFor(t.deps, uniqueUserId()),
      })
      expect(issued.status).toBe(201)
      expect((await call(t.app, 'GET', `/v1/coupons/${id}`)).body).toMatchObject({ remainingQuantity: left })
    }
  })

  it('answers 404 COUPON_NOT_FOUND for an unknown id, twice (the miss is cached, not an error)', async () => {
    for (let i = 0; i < 2; i++) {
      expectProblemShape(
        await call(t.app, 'GET', `/v1/coupons/${Number.MAX_SAFE_INTEGER}`),
        404,
        'COUPON_NOT_FOUND',
      )
    }
  })

  it.each(['0', '-1', 'abc', '1e3', '1.5', '12345678901234567890', '9007199254740992', '01'])(
    'answers 400 VALIDATION_FAILED for id %s',
    async (raw) => {
      const problem = expectProblemShape(
        await call(t.app, 'GET', `/v1/coupons/${raw}`),
        400,
        'VALIDATION_FAILED',
      )
      expect(problem.errors).toEqual([expect.objectContaining({ path: 'couponId' })])
    },
  )
})
