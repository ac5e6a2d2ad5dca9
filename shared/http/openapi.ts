import { type ConversionConfig, type JsonSchema, toJsonSchema } from '@valibot/to-json-schema'
import { Hono } from 'hono'
import type * as v from 'valibot'
import { ERROR_CODES, type ErrorCode } from '../errors'
import type { AppEnv } from './context'
import { problemType } from './problem'
import type { RouteDef } from './route'

/**
 * What each code means to a client: the table of docs/api.md in words. Typed by ErrorCode, so a code added to
 * ERROR_CODES without an explanation here fails to compile instead of leaving a dead `/docs#error-` link.
 */
export const ERROR_MEANINGS: Record<ErrorCode, string> = {
  VALIDATION_FAILED:
    'Malformed JSON, a missing, unknown or ill-typed field, an out-of-range number, or a bad path or query parameter. `errors` lists every problem with its path.',
  UNAUTHENTICATED: 'The bearer token is missing, malformed, expired or badly signed.',
  FORBIDDEN:
    "The token is valid but not allowed here: another user's balance or coupons, or a non-admin on /v1/admin.",
  NOT_FOUND: 'No route matches the method and path.',
  PRODUCT_NOT_FOUND: 'No product has this id.',
  COUPON_NOT_FOUND: 'No coupon has this id.',
  ORDER_NOT_FOUND: "No order has this id, or it is another user's order (which is never revealed).",
  METHOD_NOT_ALLOWED: 'The path exists but does not accept this method.',
  INSUFFICIENT_STOCK:
    'A line of the order (or a stock adjustment) exceeds the available stock; `detail` names the product. Nothing was changed.',
  INSUFFICIENT_BALANCE: 'The order total exceeds the balance. Nothing was changed.',
  COUPON_SOLD_OUT: 'No coupons are left to issue.',
  COUPON_ALREADY_ISSUED: 'This user already holds this coupon.',
  COUPON_NOT_ISSUABLE: "Now is outside the coupon's issuance window.",
  COUPON_NOT_USABLE:
    "The user coupon does not exist, is not the caller's, is already used or expired, or the order is below its minimum amount.",
  ORDER_NOT_CANCELLABLE: 'The order is not PAID (it is already cancelled).',
  IDEMPOTENCY_KEY_IN_USE:
    'A request with the same Idempotency-Key is still being processed; retry after it finishes.',
  PAYLOAD_TOO_LARGE: 'The request body is over 64 KiB.',
  UNSUPPORTED_MEDIA_TYPE: 'The request has a body that is not declared as Content-Type: application/json.',
  IDEMPOTENCY_KEY_REUSED: 'The Idempotency-Key was already used with a different body or path.',
  BALANCE_LIMIT_EXCEEDED: 'The charge would take the balance above 1,000,000,000 won.',
  RATE_LIMITED: "Over the caller's rate limit; wait for the number of seconds in `Retry-After`.",
  INTERNAL_ERROR: 'An unexpected failure; it was logged with the request id. Not caused by the request.',
  SERVICE_UNAVAILABLE:
    'A backing service is down and the request could not be served safely; nothing was half-done. Retry after `Retry-After` seconds.',
}

const ALL_CODES = Object.keys(ERROR_CODES) as ErrorCode[]

type Parameter = {
  name: string
  in: 'path' | 'query' | 'header'
  required: boolean
  description?: string
  schema: JsonSchema
}

type MediaContent = Record<string, { schema: JsonSchema }>

type ResponseObject = {
  description: string
  headers?: Record<string, { $ref: string }>
  content?: MediaContent
}

export type Operation = {
  operationId: string
  summary: string
  description: string
  tags: string[]
  'x-access': RouteDef['access']
  security?: Array<Record<string, string[]>>
  parameters: Parameter[]
  requestBody?: { required: true; content: MediaContent }
  responses: Record<string, ResponseObject>
}

export type OpenApiDocument = {
  openapi: '3.1.0'
  info: { title: string; version: string; description: string }
  tags: Array<{ name: string }>
  paths: Record<string, Record<string, Operation>>
  components: {
    schemas: Record<string, JsonSchema>
    securitySchemes: Record<string, Record<string, string>>
    headers: Record<string, { description: string; schema: JsonSchema }>
  }
}

/**
 * Requests are described by their wire (input) type: conversion stops before the first `transform`, so a
 * path id is a string of digits, not the number the handler receives. `check` actions have no JSON
 * Schema equivalent; `errorMode: 'ignore'` leaves them out instead of throwing, so documentation can
 * never stop a function from starting. Responses have no transforms and are described as they are sent.
 */
const REQUEST_CONVERSION: ConversionConfig = {
  target: 'draft-2020-12',
  typeMode: 'input',
  errorMode: 'ignore',
}
const RESPONSE_CONVERSION: ConversionConfig = { ...REQUEST_CONVERSION, typeMode: 'output' }

const SECURITY_SCHEME = 'bearerAuth'
const PROBLEM_REF = '#/components/schemas/ProblemDetails'
const REQUEST_ID_HEADER = { $ref: '#/components/headers/X-Request-Id' }
const RETRY_AFTER_HEADER = { $ref: '#/components/headers/Retry-After' }

/** `/v1/products/:productId` (Hono, optionally with a `{regex}` or `?`) → `/v1/products/{productId}`. */
export const toOpenApiPath = (path: string) => path.replace(/:([A-Za-z0-9_]+)(\{[^}]*\})?\??/g, '{$1}')

const pathParamNames = (path: string) => [...path.matchAll(/:([A-Za-z0-9_]+)/g)].map((m) => m[1] as string)

/** getV1ProductsByProductId: unique per method and path, which is what identifies a function. */
const operationIdOf = (route: RouteDef) =>
  route.method.toLowerCase() +
  route.path
    .split('/')
    .filter(Boolean)
    .map((segment) => {
      const name = segment.startsWith(':') ? `By-${segment.slice(1)}` : segment
      return name
        .split(/[^A-Za-z0-9]+/)
        .filter(Boolean)
        .map((word) => word[0]?.toUpperCase() + word.slice(1))
        .join('')
    })
    .join('')

/**
 * Recursive (lazy) schemas come back with `#/$defs/...` references, which inside an OpenAPI document
 * would resolve against the document root; they are moved to components.schemas under a unique name.
 */
function convert(
  schema: v.GenericSchema,
  config: ConversionConfig,
  defsName: string,
  components: Record<string, JsonSchema>,
): JsonSchema {
  const { $schema: _dialect, $defs, ...json } = toJsonSchema(schema, config)
  if (!$defs) return json
  const rename = (name: string) => `${defsName}_${name}`
  const rewrite = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(rewrite)
    if (value === null || typeof value !== 'object') return value
    return Object.fromEntries(
      Object.entries(value).map(([key, inner]) =>
        key === '$ref' && typeof inner === 'string' && inner.startsWith('#/$defs/')
          ? [key, `#/components/schemas/${rename(inner.slice('#/$defs/'.length))}`]
          : [key, rewrite(inner)],
      ),
    )
  }
  for (const [name, def] of Object.entries($defs)) components[rename(name)] = rewrite(def) as JsonSchema
  return rewrite(json) as JsonSchema
}

const objectProperties = (schema: JsonSchema) => ({
  properties: Object.entries(schema.properties ?? {}).filter(
    (entry): entry is [string, JsonSchema] => typeof entry[1] === 'object',
  ),
  required: new Set(schema.required ?? []),
})

function parametersOf(route: RouteDef, operationId: string, components: Record<string, JsonSchema>) {
  const parameters: Parameter[] = []
  const declared = route.params
    ? objectProperties(convert(route.params, REQUEST_CONVERSION, `${operationId}_params`, components))
    : undefined
  for (const name of pathParamNames(route.path)) {
    const schema = declared?.properties.find(([key]) => key === name)?.[1] ?? { type: 'string' }
    parameters.push({ name, in: 'path', required: true, schema })
  }
  if (route.query) {
    const query = objectProperties(
      convert(route.query, REQUEST_CONVERSION, `${operationId}_query`, components),
    )
    for (const [name, schema] of query.properties) {
      parameters.push({ name, in: 'query', required: query.required.has(name), schema })
    }
  }
  if (route.idempotent) {
    parameters.push({
      name: 'Idempotency-Key',
      in: 'header',
      required: false,
      description:
        'Makes a retry safe: within 24 hours the same key from the same user on the same path with the same body replays the first response (with `Idempotent-Replayed: true`) and does nothing else.',
      schema: { type: 'string', minLength: 1, maxLength: 255, pattern: '^[\\x20-\\x7E]+$' },
    })
  }
  return parameters
}

/**
 * The codes a route can answer with: its own list plus what the shared middleware adds around it
 * (validation, auth, body guards, rate limit, failures), so clients see every status they must handle.
 */
export function errorCodesOf(route: RouteDef): ErrorCode[] {
  const codes = new Set<ErrorCode>()
  if (route.params || route.query || route.body || route.idempotent) codes.add('VALIDATION_FAILED')
  if (route.access !== 'public') codes.add('UNAUTHENTICATED')
  if (route.access === 'admin' || route.path.startsWith('/v1/users/:')) codes.add('FORBIDDEN')
  for (const code of route.errors) codes.add(code)
  if (route.idempotent) {
    codes.add('IDEMPOTENCY_KEY_IN_USE')
    codes.add('IDEMPOTENCY_KEY_REUSED')
  }
  if (route.method !== 'GET') {
    codes.add('PAYLOAD_TOO_LARGE')
    codes.add('UNSUPPORTED_MEDIA_TYPE')
  }
  if (route.path.startsWith('/v1/')) codes.add('RATE_LIMITED')
  codes.add('INTERNAL_ERROR')
  codes.add('SERVICE_UNAVAILABLE')
  return ALL_CODES.filter((code) => codes.has(code))
}

/** One response per status; several codes can share one (404 PRODUCT_NOT_FOUND and NOT_FOUND). */
function errorResponses(codes: ErrorCode[]): Record<string, ResponseObject> {
  const byStatus = new Map<number, ErrorCode[]>()
  for (const code of codes) {
    const status = ERROR_CODES[code].status
    byStatus.set(status, [...(byStatus.get(status) ?? []), code])
  }
  const responses: Record<string, ResponseObject> = {}
  for (const [status, sharing] of [...byStatus].sort(([a], [b]) => a - b)) {
    const headers: ResponseObject['headers'] = { 'X-Request-Id': REQUEST_ID_HEADER }
    if (status === 429 || status === 503) headers['Retry-After'] = RETRY_AFTER_HEADER
    responses[String(status)] = {
      description: sharing.map((code) => `${code}: ${ERROR_MEANINGS[code]}`).join('\n\n'),
      headers,
      content: {
        'application/problem+json': {
          schema: { allOf: [{ $ref: PROBLEM_REF }, { properties: { code: { enum: sharing } } }] },
        },
      },
    }
  }
  return responses
}

function operationOf(route: RouteDef, components: Record<string, JsonSchema>): Operation {
  const operationId = operationIdOf(route)
  const access =
    route.access === 'public'
      ? 'Public: no token needed.'
      : route.access === 'admin'
        ? 'Needs a bearer token with role `admin`.'
        : 'Needs a bearer token.'
  const operation: Operation = {
    operationId,
    summary: route.summary,
    description: access,
    tags: [route.tag],
    'x-access': route.access,
    parameters: parametersOf(route, operationId, components),
    responses: {
      [String(route.response.status)]: {
        description: route.response.description,
        headers: { 'X-Request-Id': REQUEST_ID_HEADER },
        content: {
          'application/json': {
            schema: convert(
              route.response.schema,
              RESPONSE_CONVERSION,
              `${operationId}_response`,
              components,
            ),
          },
        },
      },
      ...errorResponses(errorCodesOf(route)),
    },
  }
  if (route.access !== 'public') operation.security = [{ [SECURITY_SCHEME]: [] }]
  if (route.body) {
    operation.requestBody = {
      required: true,
      content: {
        'application/json': {
          schema: convert(route.body, REQUEST_CONVERSION, `${operationId}_body`, components),
        },
      },
    }
  }
  return operation
}

const problemDetailsSchema = (): JsonSchema => ({
  type: 'object',
  description: 'RFC 9457 problem details. Clients branch on `code`, which is stable.',
  required: ['type', 'title', 'status', 'code', 'detail', 'instance', 'requestId'],
  properties: {
    type: { type: 'string', description: 'Link to the meaning of `code`: /docs#error-<CODE>' },
    title: { type: 'string' },
    status: { type: 'integer', minimum: 400, maximum: 599 },
    code: { type: 'string', enum: ALL_CODES },
    detail: { type: 'string', description: 'What went wrong with this request, for humans' },
    instance: { type: 'string', description: 'The request path' },
    requestId: { type: 'string', description: 'The same value as the X-Request-Id response header' },
    errors: {
      type: 'array',
      description: 'Every field problem of a VALIDATION_FAILED request',
      items: { $ref: '#/components/schemas/FieldIssue' },
    },
  },
})

/** The OpenAPI 3.1 document of the given routes, converted from the valibot schemas that validate them. */
export function buildOpenApiDocument(routes: readonly RouteDef[]): OpenApiDocument {
  const schemas: Record<string, JsonSchema> = {
    ProblemDetails: problemDetailsSchema(),
    FieldIssue: {
      type: 'object',
      required: ['path', 'message'],
      properties: {
        path: { type: 'string', description: 'Dotted path of the field, e.g. items.0.quantity' },
        message: { type: 'string' },
      },
    },
  }
  const paths: OpenApiDocument['paths'] = {}
  for (const route of routes) {
    const path = toOpenApiPath(route.path)
    paths[path] = { ...paths[path], [route.method.toLowerCase()]: operationOf(route, schemas) }
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'Commerce order service',
      version: '1.0.0',
      description:
        'Products, coupons, balances and orders. Errors are RFC 9457 problem JSON; see /docs for every error code.',
    },
    tags: [...new Set(routes.map((route) => route.tag))].sort().map((name) => ({ name })),
    paths,
    components: {
      schemas,
      securitySchemes: { [SECURITY_SCHEME]: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } },
      headers: {
        'X-Request-Id': {
          description: 'The request id, taken from the request when valid, else generated; logs carry it',
          schema: { type: 'string' },
        },
        'Retry-After': {
          description: 'Seconds to wait before retrying',
          schema: { type: 'integer', minimum: 1 },
        },
      },
    },
  }
}

// ---------------------------------------------------------------------------------------------------
// The /docs page: rendered on the server from the same document, so it needs no script and no CDN.

const escapeHtml = (text: string) =>
  text.replace(
    /[&<>"']/g,
    (ch) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[ch] as string,
  )

/** Inline code spans from `backticks`, and nothing else: descriptions are ours, but escaped anyway. */
const prose = (text: string) => escapeHtml(text).replace(/`([^`]+)`/g, '<code>$1</code>')

const range = (low: number | undefined, high: number | undefined, unit = '') => {
  if (low !== undefined && high !== undefined)
    return low === high ? `${low}${unit}` : `${low}..${high}${unit}`
  if (low !== undefined) return `≥ ${low}${unit}`
  if (high !== undefined) return `≤ ${high}${unit}`
  return undefined
}

/** A one-line reading of a JSON Schema: "integer 1..100", "string, 1..200 characters, default 20". */
function describeSchema(schema: JsonSchema): string {
  if (schema.$ref) return schema.$ref.split('/').at(-1) ?? schema.$ref
  const variants = schema.anyOf ?? schema.oneOf
  if (variants) {
    return variants
      .map((item) => (typeof item === 'object' ? describeSchema(item) : String(item)))
      .join(' or ')
  }
  const parts: string[] = []
  if (schema.enum) parts.push(`one of ${schema.enum.map((value) => JSON.stringify(value)).join(', ')}`)
  else if (schema.const !== undefined) parts.push(`exactly ${JSON.stringify(schema.const)}`)
  else if (schema.type === 'array' && typeof schema.items === 'object' && !Array.isArray(schema.items)) {
    parts.push(`array of ${schema.items.type === 'object' ? 'objects' : describeSchema(schema.items)}`)
  } else parts.push(Array.isArray(schema.type) ? schema.type.join(' or ') : (schema.type ?? 'any'))
  const numbers = range(schema.minimum, schema.maximum)
  if (numbers) parts.push(numbers)
  const length = range(schema.minLength, schema.maxLength, ' characters')
  if (length) parts.push(length)
  const items = range(schema.minItems, schema.maxItems, ' items')
  if (items) parts.push(items)
  if (schema.format) parts.push(schema.format)
  if (schema.pattern) parts.push(`matching ${schema.pattern}`)
  if (schema.default !== undefined) parts.push(`default ${JSON.stringify(schema.default)}`)
  return parts.join(', ')
}

type FieldRow = { path: string; required: boolean; schema: JsonSchema }

/** Object schemas flattened to dotted rows (`items[].quantity`), which read better than nested JSON. */
function fieldRows(schema: JsonSchema, prefix = ''): FieldRow[] {
  const rows: FieldRow[] = []
  const { properties, required } = objectProperties(schema)
  for (const [name, property] of properties) {
    const path = prefix ? `${prefix}.${name}` : name
    rows.push({ path, required: required.has(name), schema: property })
    if (property.type === 'object') rows.push(...fieldRows(property, path))
    const items = property.items
    if (
      property.type === 'array' &&
      typeof items === 'object' &&
      !Array.isArray(items) &&
      items.type === 'object'
    ) {
      rows.push(...fieldRows(items, `${path}[]`))
    }
  }
  return rows
}

function schemaHtml(schema: JsonSchema): string {
  const rows = schema.type === 'object' ? fieldRows(schema) : []
  if (rows.length === 0) return `<p><code>${escapeHtml(describeSchema(schema))}</code></p>`
  const closed =
    schema.additionalProperties === false ? '<p>Fields not listed here are rejected (400).</p>' : ''
  return `<table><thead><tr><th>field</th><th>required</th><th>type</th></tr></thead><tbody>${rows
    .map(
      (row) =>
        `<tr><td><code>${escapeHtml(row.path)}</code></td><td>${row.required ? 'yes' : 'no'}</td><td>${escapeHtml(
          describeSchema(row.schema),
        )}</td></tr>`,
    )
    .join('')}</tbody></table>${closed}`
}

function operationHtml(path: string, method: string, operation: Operation): string {
  const id = escapeHtml(operation.operationId)
  const parts = [
    `<section class="operation" id="${id}">`,
    `<h3><span class="method">${method.toUpperCase()}</span> <code>${escapeHtml(path)}</code></h3>`,
    `<p>${prose(operation.summary)}. ${prose(operation.description)}</p>`,
  ]
  if (operation.parameters.length > 0) {
    parts.push(
      '<h4>Parameters</h4><table><thead><tr><th>name</th><th>in</th><th>required</th><th>type</th></tr></thead><tbody>',
      ...operation.parameters.map(
        (p) =>
          `<tr><td><code>${escapeHtml(p.name)}</code></td><td>${p.in}</td><td>${p.required ? 'yes' : 'no'}</td><td>${escapeHtml(
            describeSchema(p.schema),
          )}</td></tr>`,
      ),
      '</tbody></table>',
    )
  }
  const body = operation.requestBody?.content['application/json']?.schema
  if (body) parts.push('<h4>Request body (application/json)</h4>', schemaHtml(body))
  parts.push('<h4>Responses</h4><dl>')
  for (const [status, response] of Object.entries(operation.responses)) {
    const success = response.content?.['application/json']?.schema
    if (success) {
      parts.push(`<dt>${status}</dt><dd>${prose(response.description)}${schemaHtml(success)}</dd>`)
      continue
    }
    const problem = response.content?.['application/problem+json']?.schema
    const codes = (problem?.allOf?.[1] as JsonSchema | undefined)?.properties?.code
    const list = typeof codes === 'object' ? ((codes.enum ?? []) as string[]) : []
    parts.push(
      `<dt>${status}</dt><dd>${list
        .map((code) => `<a href="#error-${escapeHtml(code)}"><code>${escapeHtml(code)}</code></a>`)
        .join(', ')}</dd>`,
    )
  }
  parts.push('</dl></section>')
  return parts.join('\n')
}

const STYLE = `body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
code{font:13px ui-monospace,monospace;background:#f3f3f3;padding:0 .2em}table{border-collapse:collapse;margin:.5rem 0}
th,td{border:1px solid #ddd;padding:.2rem .5rem;text-align:left;vertical-align:top}
.operation{border-top:1px solid #ccc;padding-top:.5rem}.method{font-weight:bold;color:#05a}dt{font-weight:bold}`

/** A plain HTML reference of the document, with an `error-<CODE>` anchor for every problem `type` URI. */
export function renderDocsHtml(document: OpenApiDocument): string {
  const sections: string[] = []
  for (const tag of document.tags) {
    const operations = Object.entries(document.paths).flatMap(([path, methods]) =>
      Object.entries(methods)
        .filter(([, operation]) => operation.tags.includes(tag.name))
        .map(([method, operation]) => operationHtml(path, method, operation)),
    )
    sections.push(`<h2 id="tag-${escapeHtml(tag.name)}">${escapeHtml(tag.name)}</h2>`, ...operations)
  }
  const errors = ALL_CODES.map((code) => {
    const { status, title } = ERROR_CODES[code]
    // The same string problem JSON carries in `type`, so a client can follow it here.
    const anchor = problemType(code).split('#')[1] as string
    return `<tr id="${escapeHtml(anchor)}"><td><code>${code}</code></td><td>${status}</td><td>${escapeHtml(
      title,
    )}</td><td>${prose(ERROR_MEANINGS[code])}</td></tr>`
  })
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(document.info.title)}: API reference</title>
<style>${STYLE}</style>
</head>
<body>
<h1>${escapeHtml(document.info.title)}</h1>
<p>${prose(document.info.description)} Machine-readable: <a href="/openapi.json">/openapi.json</a> (OpenAPI ${document.openapi}).</p>
<p>Authenticated routes take <code>Authorization: Bearer &lt;JWT&gt;</code> (HS256; claims <code>sub</code>, <code>role</code>, <code>exp</code>).
Every response carries <code>X-Request-Id</code>. Request bodies are JSON (<code>Content-Type: application/json</code>), at most 64 KiB.</p>
${sections.join('\n')}
<h2 id="errors">Errors</h2>
<p>Every error is <code>application/problem+json</code> with <code>type</code>, <code>title</code>, <code>status</code>, <code>code</code>, <code>detail</code>, <code>instance</code>, <code>requestId</code> and, for validation failures, <code>errors: [{ path, message }]</code>. Branch on <code>code</code>.</p>
<table><thead><tr><th>code</th><th>status</th><th>title</th><th>meaning</th></tr></thead><tbody>
${errors.join('\n')}
</tbody></table>
</body>
</html>
`
}

/**
 * `GET /openapi.json` and `GET /docs` for the routes this process serves. Both are built once: the
 * routes are fixed for the life of the process.
 */
export function createDocsApp(routes: readonly RouteDef[]): Hono<AppEnv> {
  const document = buildOpenApiDocument(routes)
  const json = JSON.stringify(document)
  const html = renderDocsHtml(document)
  const app = new Hono<AppEnv>()
  app.get('/openapi.json', (c) => c.body(json, 200, { 'Content-Type': 'application/json; charset=utf-8' }))
  app.get('/docs', (c) =>
    c.html(html, 200, {
      // Proof of "no external scripts": the page could not load one even if it tried.
      'Content-Security-Policy': "default-src 'none'; style-src 'unsafe-inline'",
    }),
  )
  return app
}
