import type { JsonSchema } from '@valibot/to-json-schema'
import * as v from 'valibot'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ERROR_CODES } from '../errors'
import type { RuntimeDeps } from '../runtime/deps'
import { discoverFunctions, type HttpFunction } from '../runtime/discover'
import { call, createTestApp, createTestDeps, expectProblemShape, tokenFor } from '../testing/harness'
import { createServiceApp } from './app'
import { buildOpenApiDocument, type OpenApiDocument, type Operation, TAGS, toOpenApiPath } from './openapi'
import { defineRoute, type RouteDef } from './route'
import { Int, idParams } from './schemas'

let deps: RuntimeDeps
let functions: HttpFunction[]
let document: OpenApiDocument

const operation = (path: string, method: string): Operation => {
  const found = document.paths[path]?.[method]
  if (!found) throw new Error(`no ${method} ${path} in the document`)
  return found
}

const operationOf = (fn: HttpFunction) =>
  operation(toOpenApiPath(fn.route.path), fn.route.method.toLowerCase())

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

  it('declares path ids and numeric query parameters as bounded integers, as a typed client sends them', () => {
    for (const path of Object.keys(document.paths)) expect(path).not.toContain(':')
    for (const fn of functions) {
      const op = operation(toOpenApiPath(fn.route.path), fn.route.method.toLowerCase())
      for (const param of op.parameters.filter((p) => p.in === 'path')) {
        expect(param, `${fn.name} ${param.name}`).toMatchObject({
          required: true,
          schema: { type: 'integer', format: 'int64', minimum: 1, maximum: Number.MAX_SAFE_INTEGER },
        })
      }
    }
    const params = operation('/v1/products', 'get').parameters
    expect(params.find((p) => p.name === 'limit')).toMatchObject({
      in: 'query',
      required: false,
      schema: { type: 'integer', minimum: 1, maximum: 100, default: 20 },
    })
    expect(params.find((p) => p.name === 'cursor')).toMatchObject({
      in: 'query',
      required: false,
      schema: { type: 'string' },
    })
  })

  it('still refuses, on every route, ids and limits that are not canonical decimal integers', async () => {
    const app = createTestApp(deps, functions)
    const admin = await tokenFor(deps, 1, 'admin')
    const pathOf = (route: RouteDef, values: Record<string, string>) =>
      route.path.replace(/:([A-Za-z0-9_]+)/g, (_, name: string) => values[name] ?? '1')
    for (const fn of functions) {
      const body = fn.route.method === 'GET' ? undefined : (fn.route.example?.body ?? {})
      for (const name of [...fn.route.path.matchAll(/:([A-Za-z0-9_]+)/g)].map((m) => m[1] as string)) {
        for (const raw of ['01', '1e3', '1.5', '0', '9007199254740992']) {
          const res = await call(app, fn.route.method, pathOf(fn.route, { [name]: raw }), {
            token: admin,
            body,
          })
          const problem = expectProblemShape(res, 400, 'VALIDATION_FAILED')
          expect(problem.errors, `${fn.name} ${name}=${raw}`).toEqual([
            { path: name, message: expect.any(String) },
          ])
        }
      }
      if (!operationOf(fn).parameters.some((p) => p.name === 'limit')) continue
      for (const raw of ['0', '101', '1.5', '1e1', '-1']) {
        const res = await call(app, 'GET', `${pathOf(fn.route, {})}?limit=${raw}`, { token: admin })
        expect(expectProblemShape(res, 400, 'VALIDATION_FAILED').errors, `${fn.name} limit=${raw}`).toEqual([
          { path: 'limit', message: expect.any(String) },
        ])
      }
    }
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

  it('declares security on every operation: bearer JWT on user and admin routes, none on public ones', () => {
    expect(document.components.securitySchemes.bearerAuth).toMatchObject({
      type: 'http',
      scheme: 'bearer',
      bearerFormat: 'JWT',
    })
    for (const fn of functions) {
      const op = operationOf(fn)
      if (fn.route.access === 'public') expect(op.security).toEqual([])
      else {
        expect(op.security).toEqual([{ bearerAuth: [] }])
        expect(op.responses['401']).toBeDefined()
      }
      if (fn.route.access === 'admin' || fn.route.access === 'self-or-admin') {
        expect(op.responses['403']).toBeDefined()
      }
    }
  })

  it('names each operation after its function and describes the servers, license and tags', () => {
    for (const fn of functions) expect(operationOf(fn).operationId).toBe(fn.name)
    expect(document.servers).toEqual([{ url: '/', description: expect.any(String) }])
    expect(document.info.license).toEqual({ name: 'MIT', identifier: 'MIT' })
    // In the order a client meets them, which is the docs page's navigation order.
    expect(document.tags.map((tag) => tag.name)).toEqual([
      'Products',
      'Balance',
      'Coupons',
      'Orders',
      'Admin',
    ])
    for (const tag of document.tags) expect(tag.description, tag.name).toMatch(/\w/)
    expect(TAGS.map((tag) => tag.name)).toEqual(document.tags.map((tag) => tag.name))
  })

  it('has an example request and response per operation that the route itself accepts and answers', () => {
    const asText = (values: Record<string, string | number> | undefined) =>
      Object.fromEntries(Object.entries(values ?? {}).map(([key, value]) => [key, String(value)]))
    for (const fn of functions) {
      const example = fn.route.example
      if (!example) throw new Error(`functions/${fn.name}/route.ts has no example`)
      const { route } = fn
      if (route.params)
        expect(v.safeParse(route.params, asText(example.params)).issues, fn.name).toBeUndefined()
      else expect(example.params, fn.name).toBeUndefined()
      if (route.query) expect(v.safeParse(route.query, asText(example.query)).issues, fn.name).toBeUndefined()
      else expect(example.query, fn.name).toBeUndefined()
      if (route.body) expect(v.safeParse(route.body, example.body).issues, fn.name).toBeUndefined()
      else expect(example.body, fn.name).toBeUndefined()
      expect(v.safeParse(route.response.schema, example.response).issues, fn.name).toBeUndefined()

      const op = operationOf(fn)
      const success = op.responses[String(route.response.status)]?.content?.['application/json']
      expect(success?.example).toEqual(example.response)
      expect(op.requestBody?.content['application/json']?.example).toEqual(example.body)
      for (const param of op.parameters.filter((p) => p.in !== 'header')) {
        expect(param.example, `${fn.name} ${param.name}`).toEqual(
          (param.in === 'path' ? example.params : example.query)?.[param.name],
        )
      }
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
    const app = createServiceApp(deps, [productGet.create(deps)], { routes: [productGet] })
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
    access: 'self-or-admin',
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
    const doc = buildOpenApiDocument([{ name: 'thing-create', route }])
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

  it('takes self-or-admin from the declaration, not from the path', () => {
    const anyUser = defineRoute({ ...route, access: 'user' })
    const op = buildOpenApiDocument([{ name: 'thing-create', route: anyUser }]).paths[
      '/v1/users/{userId}/things/{thingId}'
    ]?.post
    expect(op?.responses['401']).toBeDefined()
    expect(op?.responses['403']).toBeUndefined()
    expect(op?.description).toBe('Needs a bearer token.')
    expect(op?.['x-access']).toBe('user')
  })

  it('adds the idempotency and self-or-admin errors, and groups codes sharing a status', () => {
    const op = buildOpenApiDocument([{ name: 'thing-create', route }]).paths[
      '/v1/users/{userId}/things/{thingId}'
    ]?.post
    const codesOf = (status: string) =>
      JSON.stringify(op?.responses[status]?.content?.['application/problem+json']?.schema)
    expect(codesOf('409')).toContain('IDEMPOTENCY_KEY_IN_USE')
    expect(codesOf('409')).toContain('COUPON_NOT_USABLE')
    expect(codesOf('409')).toContain('INSUFFICIENT_BALANCE')
    expect(codesOf('422')).toContain('IDEMPOTENCY_KEY_REUSED')
    expect(op?.responses['403']).toBeDefined()
    expect(op?.description).toContain('`sub` = `userId`')
    expect(op?.parameters.find((p) => p.name === 'Idempotency-Key')).toMatchObject({
      in: 'header',
      required: false,
      schema: { minLength: 1, maxLength: 255 },
    })
  })
})
