import { eq, sql } from 'drizzle-orm'
import { beforeAll, describe, expect, it } from 'vitest'
import { coupons } from '../../shared/db/schema'
import {
  call,
  createTestApp,
  createTestDeps,
  expectProblemShape,
  tokenFor,
  uniqueUserId,
  useTestApp,
} from '../../shared/testing/harness'
import { startOwnRedis } from '../../shared/testing/own-redis'
import createCouponGetApp from '../coupon-get/handler'
import createAdminCouponCreateApp from './handler'

const t = useTestApp([createAdminCouponCreateApp, createCouponGetApp])
let admin: string

beforeAll(async () => {
  admin = await tokenFor(t.deps, uniqueUserId(), 'admin')
})

const valid = { name: 'Welcome 3,000', type: 'FIXED', value: 3_000, totalQuantity: 100, validDays: 30 }

const create = (body: unknown, token = admin) => call(t.app, 'POST', '/v1/admin/coupons', { token, body })

const fieldsOf = (problem: Record<string, unknown>) =>
  (problem.errors as Array<{ path: string }>).map((e) => e.path).sort()

describe('POST /v1/admin/coupons', () => {
  it('creates a coupon: 201, Location, defaults, and the row in MySQL', async () => {
    const res = await create(valid)
    expect(res.status).toBe(201)
    const body = res.body as Record<string, unknown> & { id: number }
    expect(res.headers.get('Location')).toBe(`/v1/coupons/${body.id}`)
    expect(body).toEqual({
      id: expect.any(Number),
      name: 'Welcome 3,000',
      type: 'FIXED',
      value: 3_000,
      minOrderAmount: 0,
      totalQuantity: 100,
      remainingQuantity: 100,
      issueStartsAt: null,
      issueEndsAt: null,
      validDays: 30,
    })
    const [row] = await t.deps.db.select().from(coupons).where(eq(coupons.id, body.id))
    expect(row).toMatchObject({
      issuedQuantity: 0,
      totalQuantity: 100,
      minOrderAmount: 0,
      issueStartsAt: null,
    })
    expect((await call(t.app, 'GET', `/v1/coupons/${body.id}`)).body).toEqual(body)
  })

  it('stores the window in UTC, whatever offset it was sent with', async () => {
    const res = await create({
      ...valid,
      type: 'PERCENT',
      value: 100,
      minOrderAmount: 10_000,
      issueStartsAt: '2030-12-01T09:00:00+09:00',
      issueEndsAt: '2030-12-01T00:30:00.5Z',
    })
    expect(res.status).toBe(201)
    expect(res.body).toMatchObject({
      type: 'PERCENT',
      value: 100,
      minOrderAmount: 10_000,
      issueStartsAt: '2030-12-01T00:00:00.000Z',
      issueEndsAt: '2030-12-01T00:30:00.500Z',
    })
  })

  it('makes an id that was looked up before it existed visible at once (the cached 404 is dropped)', async () => {
    // Probing ids that do not exist yet caches 404s for them: done on a Redis of this test's own, so that
    // no other test creating coupons at the same time meets them.
    const own = await startOwnRedis()
    const isolated = await createTestDeps({ REDIS_URL: own.url })
    try {
      const isolatedApp = createTestApp(isolated, [createAdminCouponCreateApp, createCouponGetApp])
      const [top] = await t.deps.db
        .select({ max: sql<number>`COALESCE(MAX(${coupons.id}), 0)` })
        .from(coupons)
      const next = Number(top?.max ?? 0)
      const probed = Array.from({ length: 100 }, (_, i) => next + 1 + i)
      for (const id of probed) expect((await call(isolatedApp, 'GET', `/v1/coupons/${id}`)).status).toBe(404)
      const created = await call(isolatedApp, 'POST', '/v1/admin/coupons', { token: admin, body: valid })
      const id = (created.body as { id: number }).id
      expect(probed).toContain(id)
      expect((await call(isolatedApp, 'GET', `/v1/coupons/${id}`)).status).toBe(200)
    } finally {
      await isolated.close()
      await own.stop()
    }
  })

  it.each([
    ['name', { name: '' }],
    ['name', { name: '   ' }],
    ['name', { name: 'x'.repeat(201) }],
    ['type', { type: 'PERCENTAGE' }],
    ['value', { value: 0 }],
    ['value', { value: 10_000_001 }],
    ['value', { value: 1.5 }],
    ['value', { value: '3000' }],
    ['value', { type: 'PERCENT', value: 101 }],
    ['totalQuantity', { totalQuantity: 0 }],
    ['totalQuantity', { totalQuantity: 10_000_001 }],
    ['minOrderAmount', { minOrderAmount: -1 }],
    ['validDays', { validDays: 0 }],
    ['validDays', { validDays: 366 }],
    ['issueStartsAt', { issueStartsAt: '2030-02-30T00:00:00Z' }],
    ['issueStartsAt', { issueStartsAt: '2030-01-01' }],
    ['issueStartsAt', { issueStartsAt: '2030-01-01T00:00:00' }],
    ['issueStartsAt', { issueStartsAt: '0000-01-01T00:00:00Z' }],
    ['issueStartsAt', { issueStartsAt: 1_800_000_000_000 }],
    ['issueEndsAt', { issueEndsAt: 'tomorrow' }],
    ['issueEndsAt', { issueStartsAt: '2030-01-02T00:00:00Z', issueEndsAt: '2030-01-01T00:00:00Z' }],
    ['issueEndsAt', { issueStartsAt: '2030-01-01T00:00:00Z', issueEndsAt: '2030-01-01T00:00:00Z' }],
    ['surprise', { surprise: true }],
  ])('answers 400 VALIDATION_FAILED naming %s for %j', async (path, change) => {
    const res = await create({ ...valid, ...change })
    const problem = expectProblemShape(res, 400, 'VALIDATION_FAILED')
    expect(fieldsOf(problem)).toEqual([path])
  })

  it('reports every problem at once, and every missing field', async () => {
    const problem = expectProblemShape(await create({}), 400, 'VALIDATION_FAILED')
    expect(fieldsOf(problem)).toEqual(['name', 'totalQuantity', 'type', 'validDays', 'value'])
    const several = expectProblemShape(
      await create({ ...valid, value: 0, validDays: 400, extra: 1 }),
      400,
      'VALIDATION_FAILED',
    )
    expect(fieldsOf(several)).toEqual(['extra', 'validDays', 'value'])
  })

  it('answers 400 for a missing, malformed or non-object body, 415 and 413 as docs/api.md says', async () => {
    for (const rawBody of ['', '{"name":', '[]', 'null', '"coupon"']) {
      const res = await call(t.app, 'POST', '/v1/admin/coupons', {
        token: admin,
        rawBody,
        headers: { 'Content-Type': 'application/json' },
      })
      expectProblemShape(res, 400, 'VALIDATION_FAILED')
    }
    const text = await call(t.app, 'POST', '/v1/admin/coupons', {
      token: admin,
      rawBody: JSON.stringify(valid),
      headers: { 'Content-Type': 'text/plain' },
    })
    expectProblemShape(text, 415, 'UNSUPPORTED_MEDIA_TYPE')
    const big = await create({ ...valid, name: 'x'.repeat(70_000) })
    expectProblemShape(big, 413, 'PAYLOAD_TOO_LARGE')
  })

  it('needs an admin: 401 without a token, 403 for a user', async () => {
    expectProblemShape(
      await call(t.app, 'POST', '/v1/admin/coupons', { body: valid }),
      401,
      'UNAUTHENTICATED',
    )
    expectProblemShape(await create(valid, await tokenFor(t.deps, uniqueUserId())), 403, 'FORBIDDEN')
  })
})
