import type { IncomingMessage } from 'node:http'
import type { Context } from 'hono'
import * as v from 'valibot'
import { AppError, type FieldIssue } from '../errors'

type AnySchema = v.GenericSchema

/**
 * Our own wording for valibot's issues. The default messages quote the received value, which would
 * echo client input (and anything secret in it) back in error bodies and logs.
 */
function describe(issue: v.BaseIssue<unknown>): string {
  if (issue.kind === 'schema') {
    if (issue.type === 'strict_object' && issue.expected === 'never') return 'is not a known field'
    if (issue.input === undefined) return 'is required'
    return `must be ${issue.expected ?? 'valid'}`
  }
  const requirement = String(issue.requirement)
  switch (issue.type) {
    case 'min_value':
      return `must be at least ${requirement}`
    case 'max_value':
      return `must be at most ${requirement}`
    case 'min_length':
      return `must have at least ${requirement} ${typeof issue.input === 'string' ? 'characters' : 'items'}`
    case 'max_length':
      return `must have at most ${requirement} ${typeof issue.input === 'string' ? 'characters' : 'items'}`
    case 'integer':
    case 'safe_integer':
      return 'must be an integer'
    case 'regex':
      return 'has an invalid format'
    default:
      return `is invalid (${issue.type})`
  }
}

const issuePath = (issue: v.BaseIssue<unknown>, prefix: string): string => {
  const keys = (issue.path ?? []).map((item) => String(item.key))
  return [prefix, ...keys].filter((part) => part !== '').join('.')
}

/** Validates `input` and reports every issue with its path; throws 400 VALIDATION_FAILED. */
export function parse<S extends AnySchema>(schema: S, input: unknown, prefix = ''): v.InferOutput<S> {
  const result = v.safeParse(schema, input, { message: describe })
  if (result.success) return result.output
  const errors: FieldIssue[] = result.issues.map((issue) => ({
    path: issuePath(issue, prefix),
    message: issue.message,
  }))
  const summary = errors
    .slice(0, 3)
    .map((e) => `${e.path || 'body'} ${e.message}`)
    .join('; ')
  throw new AppError('VALIDATION_FAILED', `Invalid request: ${summary}${errors.length > 3 ? '; …' : ''}`, {
    errors,
  })
}

/** Request bodies are limited to this many bytes (docs/api.md: 413 beyond it). */
export const MAX_BODY_BYTES = 64 * 1024

export const tooLarge = () =>
  new AppError('PAYLOAD_TOO_LARGE', `Request bodies are limited to ${MAX_BODY_BYTES} bytes`)

async function collect(chunks: AsyncIterable<Uint8Array>): Promise<string> {
  const parts: Uint8Array[] = []
  let size = 0
  for await (const chunk of chunks) {
    size += chunk.byteLength
    if (size > MAX_BODY_BYTES) throw tooLarge()
    parts.push(chunk)
  }
  return Buffer.concat(parts).toString('utf8')
}

/**
 * HTTP/1.1: a request with neither Transfer-Encoding nor a Content-Length above 0 has no body (Node's
 * parser holds it to that), so there is nothing to read, and no stream iterator to build and wait on.
 */
const declaresNoBody = (incoming: IncomingMessage) =>
  incoming.headers['transfer-encoding'] === undefined && Number(incoming.headers['content-length'] ?? 0) === 0

/**
 * The request body as text, at most MAX_BODY_BYTES however it is sent (a declared length over it was
 * refused before; a chunked body is counted as it arrives). Under @hono/node-server it is read straight
 * from Node's request: reading it through the web Request would make the adapter build a full Request,
 * a web stream and an abort signal per request, a tenth of a small order's CPU in a profile.
 */
export async function readBody(c: Context): Promise<string> {
  const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming
  if (incoming) return declaresNoBody(incoming) ? '' : collect(incoming)
  const body = c.req.raw.body
  return body ? collect(body) : ''
}

/** Reads the body as JSON (malformed JSON is 400, never 500) and validates it. */
export async function readJsonBody<S extends AnySchema>(c: Context, schema: S): Promise<v.InferOutput<S>> {
  const text = await readBody(c)
  if (text.trim() === '') {
    throw new AppError('VALIDATION_FAILED', 'A JSON request body is required', {
      errors: [{ path: '', message: 'is required' }],
    })
  }
  return parse(schema, parseJson(text))
}

/** JSON.parse whose failure is a 400 VALIDATION_FAILED, never a 500. */
export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    throw new AppError('VALIDATION_FAILED', 'The request body is not valid JSON', {
      errors: [{ path: '', message: 'must be valid JSON' }],
    })
  }
}

/** Query strings: a repeated key (`?limit=1&limit=2`) is an error rather than a silent pick of one. */
export function readQuery<S extends AnySchema>(c: Context, schema: S): v.InferOutput<S> {
  const all = c.req.queries()
  const query: Record<string, string | string[]> = {}
  for (const [key, values] of Object.entries(all))
    query[key] = values.length === 1 ? (values[0] ?? '') : values
  return parse(schema, query)
}
