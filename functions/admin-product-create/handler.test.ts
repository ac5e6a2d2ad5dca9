import { eq } from 'drizzle-orm'
import { beforeAll, describe, expect, it } from 'vitest'
import { products } from '../../shared/db/schema'
import { MAX_BODY_BYTES } from '../../shared/http/app'
import { mintToken } from '../../shared/http/auth'
import { call, expectProblemShape, tokenFor, useTestApp } from '../../shared/testing/harness'
import createAdminProductCreateApp from './handler'

const t = useTestApp([createAdminProductCreateApp])
let admin: string

beforeAll(async () => {
  admin = await tokenFor(t.deps, 1, 'admin')
})

const named = async (name: string) => t.deps.db.select().from(products).where(eq(products.name, name))

describe('POST /v1/admin/products', () => {
  it('creates a product and answers 201 with it', async () => {
    const name = `Grinder ${Date.now()}`
    const res = await call(t.app, 'POST', '/v1/admin/products', {
      token: admin,
      body: { name, description: 'burr', price: 189_000, stock: 5 },
    })
    expect(res.status).toBe(201)
    const body = res.body as { id: number }
    expect(res.body).toMatchObject({ name, description: 'burr', price: 189_000, stock: 5 })
    expect(res.headers.get('Location')).toBe(`/v1/products/${body.id}`)
    expect(await named(name)).toMatchObject([{ id: body.id, stock: 5, initialStock: 5, stockAdjustments: 0 }])
  })

  it('answers 401 without a token, with a bad signature, and with an expired token', async () => {
    const body = { name: 'x', price: 1, stock: 1 }
    expectProblemShape(await call(t.app, 'POST', '/v1/admin/products', { body }), 401, 'UNAUTHENTICATED')
    const forged = await mintToken('another-secret-that-is-long-enough-0000', {
      sub: 1,
      role: 'admin',
      ttlSeconds: 60,
    })
    expectProblemShape(
      await call(t.app, 'POST', '/v1/admin/products', { body, token: forged }),
      401,
      'UNAUTHENTICATED',
    )
    const expired = await mintToken(t.deps.config.jwtSecret, { sub: 1, role: 'admin', ttlSeconds: -10 })
    expectProblemShape(
      await call(t.app, 'POST', '/v1/admin/products', { body, token: expired }),
      401,
      'UNAUTHENTICATED',
    )
    const malformed = await call(t.app, 'POST', '/v1/admin/products', {
      body,
      headers: { Authorization: 'Basic YTpi' },
    })
    expectProblemShape(malformed, 401, 'UNAUTHENTICATED')
  })

  it('answers 403 to a user without the admin role', async () => {
    const name = `forbidden ${Date.now()}`
    const user = await tokenFor(t.deps, 42, 'user')
    const res = await call(t.app, 'POST', '/v1/admin/products', {
      token: user,
      body: { name, price: 1, stock: 1 },
    })
    expectProblemShape(res, 403, 'FORBIDDEN')
    expect(await named(name)).toEqual([])
  })

  it('reports every validation issue with its path', async () => {
    const res = await call(t.app, 'POST', '/v1/admin/products', {
      token: admin,
      body: { name: '', price: 0, stock: -1, colour: 'red' },
    })
    const problem = expectProblemShape(res, 400, 'VALIDATION_FAILED')
    const paths = (problem.errors as Array<{ path: string }>).map((e) => e.path).sort()
    expect(paths).toEqual(['colour', 'name', 'price', 'stock'])
    // The client's own values are never echoed back.
    expect(res.text).not.toContain('red')
  })

  it('answers 415 to a body that is not declared JSON', async () => {
    const name = `not json ${Date.now()}`
    const res = await call(t.app, 'POST', '/v1/admin/products', {
      token: admin,
      rawBody: JSON.stringify({ name, price: 1, stock: 1 }),
      headers: { 'Content-Type': 'text/plain' },
    })
    expectProblemShape(res, 415, 'UNSUPPORTED_MEDIA_TYPE')
    expect(await named(name)).toEqual([])
  })

  it('answers 413 to a body over 64 KiB, declared or chunked', async () => {
    const big = JSON.stringify({ name: 'big', description: 'x'.repeat(MAX_BODY_BYTES), price: 1, stock: 1 })
    const declared = await call(t.app, 'POST', '/v1/admin/products', {
      token: admin,
      rawBody: big,
      headers: { 'Content-Type': 'application/json' },
    })
    expectProblemShape(declared, 413, 'PAYLOAD_TOO_LARGE')
    // A streamed body has no Content-Length: the limit must count what arrives.
    const stream = new ReadableStream({
      start(controller) {
        for (let i = 0; i < 80; i++) controller.enqueue(new TextEncoder().encode('x'.repeat(1024)))
        controller.close()
      },
    })
    const chunked = await t.app.request('/v1/admin/products', {
      method: 'POST',
      body: stream,
      headers: {
        'Content-Type': 'application/json',
        'Transfer-Encoding': 'chunked',
        Authorization: `Bearer ${admin}`,
      },
      duplex: 'half',
    } as RequestInit)
    expect(chunked.status).toBe(413)
    expect(((await chunked.json()) as { code: string }).code).toBe('PAYLOAD_TOO_LARGE')
  })
})
