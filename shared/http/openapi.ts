import { type ConversionConfig, type JsonSchema, toJsonSchema } from '@valibot/to-json-schema'
import * as v from 'valibot'
import { ERROR_CODES, type ErrorCode } from '../errors'
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

export const ALL_CODES = Object.keys(ERROR_CODES) as ErrorCode[]

/** A function and its route: the folder name is the operationId, so a client's call names the function. */
export type DocumentedRoute = { name: string; route: RouteDef }

/**
 * The tags in the order a client meets them (browse, pay in, collect coupons, order; admin last), each
 * with what a client does there. The docs page navigates by this order.
 */
export const TAGS: ReadonlyArray<{ name: string; description: string }> = [
  {
    name: 'Products',
    description:
      'The catalogue: products with their current stock, and the best sellers of the last three business days. Public.',
  },
  {
    name: 'Balance',
    description:
      'Orders are paid from a balance, so a user charges it first. Every change is a ledger entry; the balance is their sum.',
  },
  {
    name: 'Coupons',
    description:
      'First-come-first-served coupon campaigns: a user issues one to themselves, then names it in an order.',
  },
  {
    name: 'Orders',
    description:
      'An order is placed and paid from the balance in one step; cancelling it refunds, restocks and returns the coupon.',
  },
  {
    name: 'Admin',
    description: 'Catalogue and coupon campaign management, for tokens with role `admin`.',
  },
]

export type Parameter = {
  name: string
  in: 'path' | 'query' | 'header'
  required: boolean
  description?: string
  schema: JsonSchema
  example?: unknown
}

type MediaContent = Record<string, { schema: JsonSchema; example?: unknown }>

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
  security: Array<Record<string, string[]>>
  parameters: Parameter[]
  requestBody?: { required: true; content: MediaContent }
  responses: Record<string, ResponseObject>
}

export type OpenApiDocument = {
  openapi: '3.1.0'
  info: {
    title: string
    version: string
    description: string
    license: { name: string; identifier: string }
  }
  servers: Array<{ url: string; description: string }>
  tags: Array<{ name: string; description?: string }>
  paths: Record<string, Record<string, Operation>>
  components: {
    schemas: Record<string, JsonSchema>
    securitySchemes: Record<string, Record<string, string>>
    headers: Record<string, { description: string; schema: JsonSchema }>
  }
}

/**
 * Bodies are described by their wire (input) type: conversion stops before the first `transform`.
 * `check` actions have no JSON Schema equivalent; `errorMode: 'ignore'` leaves them out instead of
 * throwing, so documentation can never stop a function from starting. Responses have no transforms and
 * are described as they are sent.
 */
const REQUEST_CONVERSION: ConversionConfig = {
  target: 'draft-2020-12',
  typeMode: 'input',
  errorMode: 'ignore',
}
const RESPONSE_CONVERSION: ConversionConfig = { ...REQUEST_CONVERSION, typeMode: 'output' }

/**
 * Path and query parameters are text on the wire, and OpenAPI describes a parameter by the value that
 * text serializes (`type: integer` for `?limit=20`), so they are converted from the schema after the
 * last transform (IdString's `v.number()`); the text rules before it (no leading zeros, no exponent)
 * stay the server's. A default is the wire text ('20'): it is documented as the value it parses to.
 */
const PARAMETER_CONVERSION: ConversionConfig = {
  ...REQUEST_CONVERSION,
  typeMode: 'output',
  overrideSchema: ({ valibotSchema, jsonSchema }) => {
    if (jsonSchema.default === undefined) return undefined
    const parsed = v.safeParse(valibotSchema as v.GenericSchema, undefined)
    const value: unknown = parsed.success ? parsed.output : undefined
    return typeof value === 'number' || typeof value === 'boolean' || typeof value === 'string'
      ? { ...jsonSchema, default: value }
      : undefined
  },
}

const SECURITY_SCHEME = 'bearerAuth'
const PROBLEM_REF = '#/components/schemas/ProblemDetails'
const REQUEST_ID_HEADER = { $ref: '#/components/headers/X-Request-Id' }
const RETRY_AFTER_HEADER = { $ref: '#/components/headers/Retry-After' }

/** `/v1/products/:productId` (Hono, optionally with a `{regex}` or `?`) → `/v1/products/{productId}`. */
export const toOpenApiPath = (path: string) => path.replace(/:([A-Za-z0-9_]+)(\{[^}]*\})?\??/g, '{$1}')

const pathParamNames = (path: string) => [...path.matchAll(/:([A-Za-z0-9_]+)/g)].map((m) => m[1] as string)

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

export const objectProperties = (schema: JsonSchema) => ({
  properties: Object.entries(schema.properties ?? {}).filter(
    (entry): entry is [string, JsonSchema] => typeof entry[1] === 'object',
  ),
  required: new Set(schema.required ?? []),
})

/** The example key of an idempotent route: any 1..255 printable characters the client makes unique. */
export const exampleIdempotencyKey = (name: string) => `${name}-0001`

function parametersOf({ name, route }: DocumentedRoute, components: Record<string, JsonSchema>) {
  const parameters: Parameter[] = []
  const example = route.example
  const declared = route.params
    ? objectProperties(convert(route.params, PARAMETER_CONVERSION, `${name}_params`, components))
    : undefined
  for (const param of pathParamNames(route.path)) {
    const schema = declared?.properties.find(([key]) => key === param)?.[1] ?? { type: 'string' }
    parameters.push(
      withExample({ name: param, in: 'path', required: true, schema }, example?.params?.[param]),
    )
  }
  if (route.query) {
    const query = objectProperties(convert(route.query, PARAMETER_CONVERSION, `${name}_query`, components))
    for (const [param, schema] of query.properties) {
      parameters.push(
        withExample(
          { name: param, in: 'query', required: query.required.has(param), schema },
          example?.query?.[param],
        ),
      )
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
      example: exampleIdempotencyKey(name),
    })
  }
  return parameters
}

const withExample = (parameter: Parameter, example: unknown): Parameter =>
  example === undefined ? parameter : { ...parameter, example }

/** As declared in the route: the user named in the path themself, or an admin. */
export const isSelfOrAdmin = (route: RouteDef) => route.access === 'self-or-admin'

/**
 * The codes a route can answer with: its own list plus what the shared middleware adds around it
 * (validation, auth, body guards, rate limit, failures), so clients see every status they must handle.
 */
export function errorCodesOf(route: RouteDef): ErrorCode[] {
  const codes = new Set<ErrorCode>()
  if (route.params || route.query || route.body || route.idempotent) codes.add('VALIDATION_FAILED')
  if (route.access !== 'public') codes.add('UNAUTHENTICATED')
  if (route.access === 'admin' || isSelfOrAdmin(route)) codes.add('FORBIDDEN')
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

function accessOf(route: RouteDef): string {
  if (route.access === 'public') return 'Public: no token needed.'
  if (route.access === 'admin') return 'Needs a bearer token with role `admin`.'
  if (isSelfOrAdmin(route))
    return 'Needs a bearer token of this user (`sub` = `userId`) or with role `admin`.'
  return 'Needs a bearer token.'
}

const withMediaExample = (content: MediaContent, example: unknown): MediaContent =>
  example === undefined
    ? content
    : Object.fromEntries(Object.entries(content).map(([type, media]) => [type, { ...media, example }]))

function operationOf(documented: DocumentedRoute, components: Record<string, JsonSchema>): Operation {
  const { name, route } = documented
  const operation: Operation = {
    operationId: name,
    summary: route.summary,
    description: accessOf(route),
    tags: [route.tag],
    'x-access': route.access,
    // Explicit on every operation, `[]` on public ones: a generator or linter then never has to guess.
    security: route.access === 'public' ? [] : [{ [SECURITY_SCHEME]: [] }],
    parameters: parametersOf(documented, components),
    responses: {
      [String(route.response.status)]: {
        description: route.response.description,
        headers: { 'X-Request-Id': REQUEST_ID_HEADER },
        content: withMediaExample(
          {
            'application/json': {
              schema: convert(route.response.schema, RESPONSE_CONVERSION, `${name}_response`, components),
            },
          },
          route.example?.response,
        ),
      },
      ...errorResponses(errorCodesOf(route)),
    },
  }
  if (route.body) {
    operation.requestBody = {
      required: true,
      content: withMediaExample(
        {
          'application/json': { schema: convert(route.body, REQUEST_CONVERSION, `${name}_body`, components) },
        },
        route.example?.body,
      ),
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

/** The OpenAPI 3.1 document of the given functions, converted from the valibot schemas that validate them. */
export function buildOpenApiDocument(functions: readonly DocumentedRoute[]): OpenApiDocument {
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
  for (const fn of functions) {
    const path = toOpenApiPath(fn.route.path)
    paths[path] = { ...paths[path], [fn.route.method.toLowerCase()]: operationOf(fn, schemas) }
  }
  const used = new Set(functions.map((fn) => fn.route.tag))
  // A tag missing from TAGS is still listed (after the known ones), so its routes stay reachable;
  // the lint test then fails on its missing description.
  const known = TAGS.filter((tag) => used.has(tag.name))
  const unknown = [...used].filter((name) => !TAGS.some((tag) => tag.name === name)).sort()
  return {
    openapi: '3.1.0',
    info: {
      title: 'Commerce order service',
      version: '1.0.0',
      description:
        'Products, coupons, balances and orders. Errors are RFC 9457 problem JSON; see /docs for every error code.',
      license: { name: 'MIT', identifier: 'MIT' },
    },
    // Relative: the document is served by the service it describes, behind whatever host that is.
    servers: [{ url: '/', description: 'The host that serves this document' }],
    tags: [...known, ...unknown.map((name) => ({ name }))],
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
