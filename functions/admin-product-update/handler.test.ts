import { eq } from 'drizzle-orm'
import { beforeAll, describe, expect, it } from 'vitest'
import { products } from '../../shared/db/schema'
import { checkInvariants } from '../../shared/invariants/check'
import { call, expectProblemShape, insertProduct, tokenFor, useTestApp } from '../../shared/testing/harness'
import createAdminProductUpdateApp from './handler'

const t = useTestApp([createAdminProductUpdateApp])
let admin: string

beforeAll(async () => {
  admin = await tokenFor(t.deps, 1, 'admin')
})

const row = async (id: number) => (await t.deps.db.select().from(products).where(eq(products.id, id)))[0]
const patch = (id: number | string, body: unknown, token = admin) =>
  call(t.app, 'PATCH', `/v1/admin/products/${id}`, { token, body })

describe('PATCH /v1/admin/products/:productId', () => {
  it('changes the given fields and adds stockAdjustment', async () => {
    const id = await insertProduct(t.deps, { name: 'Old', price: 1_000, stock: 10 })
    const res = await patch(id, { name: 'New', price: 1_500, stockAdjustment: 5 })
    expect(res.status).toBe(200)
    expect(res.body).toMatchObject({ id, name: 'New', price: 1_500, stock: 15 })
    expect(await row(id)).toMatchObject({ stock: 15, stockAdjustments: 5, initialStock: 10 })
    expect(await checkInvariants(t.deps.db, { productIds: [id] })).toEqual([])
  })

  it('refuses to take stock below 0 with 409 INSUFFICIENT_STOCK and changes nothing', async () => {
    const id = await insertProduct(t.deps, { name: 'Keep', stock: 3 })
    expectProblemShape(await patch(id, { name: 'Changed', stockAdjustment: -4 }), 409, 'INSUFFICIENT_STOCK')
    expect(await row(id)).toMatchObject({ name: 'Keep', stock: 3, stockAdjustments: 0 })
  })

  it('applies 20 concurrent adjustments exactly', async () => {
    const id = await insertProduct(t.deps, { stock: 100 })
    const responses = await Promise.all(
      Array.from({ length: 20 }, (_, i) => patch(id, { stockAdjustment: i % 2 === 0 ? 3 : -1 })),
    )
    expect(responses.every((r) => r.status === 200)).toBe(true)
    expect(await row(id)).toMatchObject({ stock: 120, stockAdjustments: 20 })
    expect(await checkInvariants(t.deps.db, { productIds: [id] })).toEqual([])
  })

  it('answers 404 for an unknown product', async () => {
    expectProblemShape(await patch(Number.MAX_SAFE_INTEGER, { price: 5 }), 404, 'PRODUCT_NOT_FOUND')
  })

  it.each([
    ['an empty body', {}],
    ['a zero adjustment', { stockAdjustment: 0 }],
    ['a fractional adjustment', { stockAdjustment: 1.5 }],
    ['a price of 0', { price: 0 }],
    ['a price over 100,000,000', { price: 100_000_001 }],
    ['a blank name', { name: '   ' }],
    ['stock instead of stockAdjustment', { stock: 5 }],
    ['null name', { name: null }],
  ])('rejects %s with 400 and changes nothing', async (_label, body) => {
    const id = await insertProduct(t.deps, { name: 'Same', price: 700, stock: 7 })
    expectProblemShape(await patch(id, body), 400, 'VALIDATION_FAILED')
    expect(await row(id)).toMatchObject({ name: 'Same', price: 700, stock: 7 })
  })

  it('answers 400 to an adjustment that would take stock past its ceiling', async () => {
    const id = await insertProduct(t.deps, { stock: 10 })
    expectProblemShape(await patch(id, { stockAdjustment: 1_000_000_000 }), 400, 'VALIDATION_FAILED')
    expect(await row(id)).toMatchObject({ stock: 10 })
  })

  it('answers 401 and 403 before looking at the body', async () => {
    const id = await insertProduct(t.deps, { name: 'Guarded' })
    expectProblemShape(
      await call(t.app, 'PATCH', `/v1/admin/products/${id}`, { body: { name: 'x' } }),
      401,
      'UNAUTHENTICATED',
    )
    expectProblemShape(await patch(id, { name: 'x' }, await tokenFor(t.deps, 5, 'user')), 403, 'FORBIDDEN')
    expect(await row(id)).toMatchObject({ name: 'Guarded' })
  })
})
