import type { JsonSchema } from '@valibot/to-json-schema'
import * as v from 'valibot'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ERROR_CODES, type ErrorCode } from '../errors'
import type { RuntimeDeps } from '../runtime/deps'
import { discoverFunctions, type HttpFunction } from '../runtime/discover'
import { call, createTestApp, createTestDeps } from '../testing/harness'
import { createServiceApp } from './app'
import { buildOpenApiDocument, type OpenApiDocument, type Operation, toOpenApiPath } from './openapi'
import { defineRoute } from './route'
import { Int, idParams } from './schemas'

let deps: RuntimeDeps
let functions: HttpFunction[]
let document: OpenApiDocument

const operation = (path: string, method: string): Operation => {
  const found = document.paths[path]?.[method]
  if (!found) throw new Error(`no ${method} ${path} in the document`)
  return found
}

/** Every `$ref` in `value`, so each can be checked to resolve inside the document. */
const refsIn = (value: unknown): string[] => {
  if (Array.isArray(value)) return value.flatMap(refsIn)
  if (value === null || typeof value !== 'object') return []
  return Object.entries(value).flatMap(([key, inner]) =>
    key === '$ref' && typeof inner === 'string' ? [inner] : refsIn(inner),
  )
}

const resolves = (doc: unknown, ref: string) =>
  ref.startsWith('#/') &&
  ref
    .slice(2)
    .split('/')
    .reduce<unknown>((node, key) => (node as Record<string, unknown> | undefined)?.[key], doc) !== undefined

beforeAll(async () => {
  deps = await createTestDeps()
  functions = await discoverFunctions()
  const res = await call(createTestApp(deps, functions), 'GET', '/openapi.json')
  expect(res.status).toBe(200)
  expect(res.headers.get('Content-Type')).toMatch(/^application\/json/)
  document = res.body as OpenApiDocument
})
afterAll(async () => {
  await deps.close()
})

describe('GET /openapi.json', () => {
  it('is an OpenAPI 3.1 document with every discovered function', () => {
    expect(document.openapi).toBe('3.1.0')
    expect(document.info).toMatchObject({ title: expect.any(String), version: expect.any(String) })
    expect(functions.length).toBeGreaterThan(0)
    for (const fn of functions) {
      const op = operation(toOpenApiPath(fn.route.path), fn.route.method.toLowerCase())
      expect(op.summary).toBe(fn.route.summary)
      expect(op.tags).toEqual([fn.route.tag])
      expect(Object.keys(op.responses)).toContain(String(fn.route.response.status))
    }
    const ids = Object.values(document.paths).flatMap((methods) =>
      Object.values(methods).map((op) => op.operationId),
    )
    expect(new Set(ids).size).toBe(ids.length)
  })

  it('uses {param} paths and declares every path parameter as a string of digits', () => {
    for (const path of Object.keys(document.paths)) expect(path).not.toContain(':')
    const param = operation('/v1/products/{productId}', 'get').parameters.find((p) => p.name === 'productId')
    expect(param).toMatchObject({ in: 'path', required: true, schema: { type: 'string' } })
    expect(new RegExp(param?.schema.pattern ?? '').test('42')).toBe(true)
    expect(new RegExp(param?.schema.pattern ?? '').test('1e3')).toBe(false)
  })

  it('describes query parameters as the strings they are on the wire', () => {
    const params = operation('/v1/products', 'get').parameters
    expect(params.find((p) => p.name === 'limit')).toMatchObject({
      in: 'query',
      required: false,
      schema: { type: 'string', default: '20' },
    })
    expect(params.find((p) => p.name === 'cursor')).toMatchObject({ in: 'query', required: false })
  })

  it("converts admin-product-create's body from its valibot schema: required fields, unknown ones rejected", () => {
    const op = operation('/v1/admin/products', 'post')
    const body = op.requestBody?.content['application/json']?.schema as JsonSchema
    expect(body.type).toBe('object')
    expect(body.required).toEqual(expect.arrayContaining(['name', 'price', 'stock']))
    expect(body.required).not.toContain('description')
    expect(body.additionalProperties).toBe(false)
    expect(body.properties?.price).toMatchObject({ type: 'integer', minimum: 1, maximum: 100_000_000 })
    expect(body.properties?.name).toMatchObject({ type: 'string', minLength: 1, maxLength: 200 })
    expect(body).not.toHaveProperty('$schema')
  })

  it('puts bearer JWT security on user and admin routes only', () => {
    expect(document.components.securitySchemes.bearerAuth).toMatchObject({
      type: 'http',
      scheme: 'bearer',
      bearerFormat: 'JWT',
    })
    for (const fn of functions) {
      const op = operation(toOpenApiPath(fn.route.path), fn.route.method.toLowerCase())
      if (fn.route.access === 'public') expect(op.security).toBeUndefined()
      else {
        expect(op.security).toEqual([{ bearerAuth: [] }])
        expect(op.responses['401']).toBeDefined()
      }
      if (fn.route.access === 'admin') expect(op.responses['403']).toBeDefined()
    }
  })

  it('documents every error response as ProblemDetails, with the codes the route declares', () => {
    const problem = document.components.schemas.ProblemDetails as JsonSchema
    expect(problem.required).toEqual(
      expect.arrayContaining(['type', 'title', 'status', 'code', 'detail', 'instance', 'requestId']),
    )
    expect(Object.keys(problem.properties ?? {})).toContain('errors')
    for (const fn of functions) {
      const op = operation(toOpenApiPath(fn.route.path), fn.route.method.toLowerCase())
      const errorStatuses = Object.keys(op.responses).filter((status) => Number(status) >= 400)
      for (const status of errorStatuses) {
        const schema = op.responses[status]?.content?.['application/problem+json']?.schema
        expect(refsIn(schema)).toContain('#/components/schemas/ProblemDetails')
      }
      for (const code of fn.route.errors) expect(errorStatuses).toContain(String(ERROR_CODES[code].status))
      for (const status of ['429', '500', '503']) expect(errorStatuses).toContain(status)
      expect(op.responses['429']?.headers).toHaveProperty('Retry-After')
    }
    const update = operation('/v1/admin/products/{productId}', 'patch')
    expect(refsIn(update.responses['409'])).toContain('#/components/schemas/ProblemDetails')
    expect(JSON.stringify(update.responses['409'])).toContain('INSUFFICIENT_STOCK')
    expect(update.responses['413']).toBeDefined()
    expect(update.responses['415']).toBeDefined()
  })

  it('has no dangling $ref', () => {
    for (const ref of refsIn(document)) expect(resolves(document, ref), ref).toBe(true)
  })

  it('documents only the routes a single-function process serves', async () => {
    const productGet = functions.find((fn) => fn.name === 'product-get')
    if (!productGet) throw new Error('functions/product-get is missing')
    const app = createServiceApp(deps, [productGet.create(deps)], { routes: [productGet.route] })
    const doc = (await call(app, 'GET', '/openapi.json')).body as OpenApiDocument
    expect(Object.keys(doc.paths)).toEqual(['/v1/products/{productId}'])
  })
})

describe('buildOpenApiDocument', () => {
  const Tree: v.GenericSchema = v.object({ name: v.string(), children: v.array(v.lazy(() => Tree)) })
  const route = defineRoute({
    method: 'POST',
    path: '/v1/users/:userId/things/:thingId{[0-9]+}',
    summary: 'A route with everything that could trip the converter',
    tag: 'Test',
    access: 'user',
    params: idParams('userId'),
    query: v.strictObject({
      at: v.optional(
        v.pipe(
          v.string(),
          v.transform((s) => new Date(s)),
        ),
      ),
    }),
    body: v.pipe(
      v.strictObject({
        quantity: v.pipe(
          Int(1, 100),
          v.check((n) => n % 2 === 0, 'must be even'),
        ),
      }),
      v.check((body) => body.quantity !== 4, 'not 4'),
    ),
    idempotent: true,
    response: { status: 201, description: 'A tree', schema: Tree },
    errors: ['COUPON_NOT_USABLE', 'INSUFFICIENT_BALANCE'],
  })

  it('never throws on transform, check or lazy schemas, and keeps every $ref resolvable', () => {
    const doc = buildOpenApiDocument([route])
    const op = doc.paths['/v1/users/{userId}/things/{thingId}']?.post
    if (!op) throw new Error('route missing')
    expect(op.parameters.map((p) => `${p.in}:${p.name}`)).toEqual([
      'path:userId',
      'path:thingId',
      'query:at',
      'header:Idempotency-Key',
    ])
    expect(op.parameters.find((p) => p.name === 'at')?.schema).toEqual({ type: 'string' })
    expect(op.requestBody?.content['application/json']?.schema).toMatchObject({
      required: ['quantity'],
      properties: { quantity: { type: 'integer', minimum: 1, maximum: 100 } },
    })
    for (const ref of refsIn(doc)) expect(resolves(doc, ref), ref).toBe(true)
  })

  it('adds the idempotency and self-or-admin errors, and groups codes sharing a status', () => {
    const op = buildOpenApiDocument([route]).paths['/v1/users/{userId}/things/{thingId}']?.post
    const codesOf = (status: string) =>
      JSON.stringify(op?.responses[status]?.content?.['application/problem+json']?.schema)
    expect(codesOf('409')).toContain('IDEMPOTENCY_KEY_IN_USE')
    expect(codesOf('409')).toContain('COUPON_NOT_USABLE')
    expect(codesOf('409')).toContain('INSUFFICIENT_BALANCE')
    expect(codesOf('422')).toContain('IDEMPOTENCY_KEY_REUSED')
    expect(op?.responses['403']).toBeDefined()
    expect(op?.parameters.find((p) => p.name === 'Idempotency-Key')).toMatchObject({
      in: 'header',
      required: false,
      schema: { minLength: 1, maxLength: 255 },
    })
  })
})

describe('GET /docs', () => {
  it('is a self-contained HTML page with every operation and an anchor for every error code', async () => {
    const res = await call(createTestApp(deps, functions), 'GET', '/docs')
    expect(res.status).toBe(200)
    expect(res.headers.get('Content-Type')).toMatch(/^text\/html/)
    expect(res.text).not.toMatch(/<script|<link|https?:\/\//i)
    for (const fn of functions) expect(res.text).toContain(toOpenApiPath(fn.route.path))
    for (const code of Object.keys(ERROR_CODES) as ErrorCode[]) {
      const row = new RegExp(`<tr id="error-${code}">(.*?)</tr>`).exec(res.text)?.[1]
      expect(row, code).toBeDefined()
      expect(row).toContain(`<td>${ERROR_CODES[code].status}</td>`)
      expect(row).toContain(ERROR_CODES[code].title.replace(/'/g, '&#39;'))
    }
  })

  it('is the page problem JSON links to', async () => {
    const res = await call(createTestApp(deps, functions), 'GET', '/v1/products/0')
    const type = (res.body as { type: string }).type
    expect(type).toBe('/docs#error-VALIDATION_FAILED')
    const docs = await call(createTestApp(deps, functions), 'GET', type.split('#')[0] as string)
    expect(docs.text).toContain(`id="${type.split('#')[1]}"`)
  })
})
