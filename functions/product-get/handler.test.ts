import { eq } from 'drizzle-orm'
import { describe, expect, it } from 'vitest'
import { products } from '../../shared/db/schema'
import {
  call,
  createTestApp,
  createTestDeps,
  expectProblemShape,
  insertProduct,
  tokenFor,
  useTestApp,
} from '../../shared/testing/harness'
import createAdminProductUpdateApp from '../admin-product-update/handler'
import createProductGetApp from './handler'

const t = useTestApp([createProductGetApp, createAdminProductUpdateApp])

const counter = async (name: string, labels: Record<string, string>) => {
  const metric = await t.deps.metrics.registry.getSingleMetric(name)?.get()
  const value = metric?.values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l))
  return value?.value ?? 0
}

describe('GET /v1/products/:productId', () => {
  it('returns the product with its stock', async () => {
    const id = await insertProduct(t.deps, { name: 'Kettle', price: 39_000, stock: 7, description: 'steel' })
    const res = await call(t.app, 'GET', `/v1/products/${id}`)
    expect(res.status).toBe(200)
    expect(res.body).toMatchObject({ id, name: 'Kettle', description: 'steel', price: 39_000, stock: 7 })
    const body = res.body as { createdAt: string; updatedAt: string }
    expect(new Date(body.createdAt).toISOString()).toBe(body.createdAt)
    expect(Object.keys(res.body as object)).toEqual([
      'id',
      'name',
      'description',
      'price',
      'stock',
      'createdAt',
      'updatedAt',
    ])
  })

  it('answers 404 PRODUCT_NOT_FOUND for an unknown id', async () => {
    const res = await call(t.app, 'GET', `/v1/products/${Number.MAX_SAFE_INTEGER}`)
    expectProblemShape(res, 404, 'PRODUCT_NOT_FOUND')
  })

  it.each(['0', '-1', 'abc', '1e3', '1.5', '12345678901234567890', '9007199254740992', '%20', '01'])(
    'answers 400 VALIDATION_FAILED for id %s',
    async (raw) => {
      const res = await call(t.app, 'GET', `/v1/products/${raw}`)
      const problem = expectProblemShape(res, 400, 'VALIDATION_FAILED')
      expect(problem.errors).toEqual([expect.objectContaining({ path: 'productId' })])
    },
  )

  it('serves product info from memory after the first read, with Redis as the shared copy', async () => {
    const id = await insertProduct(t.deps, { name: 'Cached' })
    const loadsBefore = await counter('cache_loads_total', { cache: 'product-info' })
    const hitsBefore = await counter('cache_requests_total', { cache: 'product-info', outcome: 'memory_hit' })
    await call(t.app, 'GET', `/v1/products/${id}`)
    // A change made behind the service's back stays invisible: proof that the second read is the cache's.
    await t.deps.db.update(products).set({ name: 'Renamed in SQL' }).where(eq(products.id, id))
    const second = await call(t.app, 'GET', `/v1/products/${id}`)
    expect((second.body as { name: string }).name).toBe('Cached')
    expect(await counter('cache_loads_total', { cache: 'product-info' })).toBe(loadsBefore + 1)
    expect(await counter('cache_requests_total', { cache: 'product-info', outcome: 'memory_hit' })).toBe(
      hitsBefore + 1,
    )
    expect(await t.deps.redis.pttl(`cache:product-info:${id}`)).toBeGreaterThan(3_500_000)
  })

  it('shows an admin update at once: the cache is invalidated, not left to expire', async () => {
    const id = await insertProduct(t.deps, { name: 'Before', price: 1_000 })
    await call(t.app, 'GET', `/v1/products/${id}`)
    const admin = await tokenFor(t.deps, 1, 'admin')
    const patch = await call(t.app, 'PATCH', `/v1/admin/products/${id}`, {
      token: admin,
      body: { name: 'After', price: 2_000 },
    })
    expect(patch.status).toBe(200)
    const res = await call(t.app, 'GET', `/v1/products/${id}`)
    expect(res.body).toMatchObject({ name: 'After', price: 2_000 })
  })

  it('shows a stock change made directly in SQL within one second', async () => {
    const id = await insertProduct(t.deps, { stock: 50 })
    expect((await call(t.app, 'GET', `/v1/products/${id}`)).body).toMatchObject({ stock: 50 })
    await t.deps.db.update(products).set({ stock: 49 }).where(eq(products.id, id))
    await new Promise((resolve) => setTimeout(resolve, 1_000))
    expect((await call(t.app, 'GET', `/v1/products/${id}`)).body).toMatchObject({ stock: 49 })
  })

  it('shows an admin update on the next read in another process, whose memory held the old one', async () => {
    const other = await createTestDeps()
    try {
      const otherApp = createTestApp(other, [createProductGetApp])
      const id = await insertProduct(t.deps, { name: 'Old name', price: 1_000 })
      // The other process now holds the product in memory (a second read there is a memory hit).
      expect((await call(otherApp, 'GET', `/v1/products/${id}`)).body).toMatchObject({ name: 'Old name' })
      expect((await call(otherApp, 'GET', `/v1/products/${id}`)).body).toMatchObject({ name: 'Old name' })
      const admin = await tokenFor(t.deps, 1, 'admin')
      const patch = await call(t.app, 'PATCH', `/v1/admin/products/${id}`, {
        token: admin,
        body: { name: 'New name', price: 2_000 },
      })
      expect(patch.status).toBe(200)
      expect((await call(otherApp, 'GET', `/v1/products/${id}`)).body).toMatchObject({
        name: 'New name',
        price: 2_000,
      })
    } finally {
      await other.close()
    }
  })

  it('loads an uncached product once across two processes (the Redis lock)', async () => {
    const other = await createTestDeps()
    try {
      const otherApp = createTestApp(other, [createProductGetApp])
      const id = await insertProduct(t.deps, { name: 'Shared' })
      const loads = async () =>
        (await counter('cache_loads_total', { cache: 'product-info' })) +
        ((await other.metrics.registry.getSingleMetric('cache_loads_total')?.get())?.values.find(
          (v) => v.labels.cache === 'product-info',
        )?.value ?? 0)
      const before = await loads()
      const responses = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          call(i % 2 === 0 ? t.app : otherApp, 'GET', `/v1/products/${id}`),
        ),
      )
      expect(responses.every((r) => r.status === 200)).toBe(true)
      expect(await loads()).toBe(before + 1)
    } finally {
      await other.close()
    }
  })

  it('loads an uncached product once for 50 concurrent readers (stampede protection)', async () => {
    const id = await insertProduct(t.deps, { name: 'Hot' })
    const loadsBefore = await counter('cache_loads_total', { cache: 'product-info' })
    const responses = await Promise.all(
      Array.from({ length: 50 }, () => call(t.app, 'GET', `/v1/products/${id}`)),
    )
    expect(responses.every((r) => r.status === 200 && (r.body as { name: string }).name === 'Hot')).toBe(true)
    expect(await counter('cache_loads_total', { cache: 'product-info' })).toBe(loadsBefore + 1)
  })
})
