import { describe, expect, it } from 'vitest'
import { encodeCursor } from '../../shared/http/schemas'
import { call, expectProblemShape, insertProduct, useTestApp } from '../../shared/testing/harness'
import createProductListApp from './handler'

const t = useTestApp([createProductListApp])

type Page = {
  items: Array<{ id: number; name: string; price: number; stock: number }>
  nextCursor: string | null
}

describe('GET /v1/products', () => {
  it('pages through products in id order', async () => {
    const ids = [await insertProduct(t.deps), await insertProduct(t.deps), await insertProduct(t.deps)]
    const start = encodeCursor((ids[0] as number) - 1)
    const first = (await call(t.app, 'GET', `/v1/products?limit=2&cursor=${start}`)).body as Page
    expect(first.items.map((p) => p.id)).toEqual(ids.slice(0, 2))
    expect(Object.keys(first.items[0] ?? {})).toEqual(['id', 'name', 'price', 'stock'])
    expect(first.nextCursor).not.toBeNull()
    const second = (await call(t.app, 'GET', `/v1/products?limit=1&cursor=${first.nextCursor}`)).body as Page
    expect(second.items.map((p) => p.id)).toEqual([ids[2]])
  })

  it('defaults to 20 items and ends with a null cursor', async () => {
    const all = (await call(t.app, 'GET', '/v1/products')).body as Page
    expect(all.items.length).toBeLessThanOrEqual(20)
    const last = await insertProduct(t.deps)
    const tail = (await call(t.app, 'GET', `/v1/products?cursor=${encodeCursor(last - 1)}`)).body as Page
    expect(tail).toMatchObject({ items: [{ id: last }], nextCursor: null })
  })

  it.each([
    'limit=0',
    'limit=101',
    'limit=abc',
    'limit=-1',
    'limit=1.5',
    'cursor=abc',
    'cursor=',
    'limit=1&limit=2',
    'sort=name',
  ])('answers 400 to ?%s', async (query) => {
    expectProblemShape(await call(t.app, 'GET', `/v1/products?${query}`), 400, 'VALIDATION_FAILED')
  })
})
