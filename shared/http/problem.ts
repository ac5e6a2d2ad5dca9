import type { Context } from 'hono'
import { type AppError, ERROR_CODES, type ErrorCode, type FieldIssue } from '../errors'
import type { AppEnv } from './context'

export type ProblemBody = {
  type: string
  title: string
  status: number
  code: ErrorCode
  detail: string
  instance: string
  requestId: string
  errors?: FieldIssue[]
  [extension: string]: unknown
}

export const problemType = (code: ErrorCode) => `/docs#error-${code}`

/** Renders an AppError as RFC 9457 problem JSON. Works even when request setup failed half-way. */
export function problemResponse(
  c: Context<AppEnv>,
  error: AppError,
  extensions: Record<string, unknown> = {},
) {
  const requestId = c.get('requestId') ?? c.res.headers.get('X-Request-Id') ?? ''
  const body: ProblemBody = {
    type: problemType(error.code),
    title: ERROR_CODES[error.code].title,
    status: error.status,
    code: error.code,
    detail: error.detail,
    instance: c.req.path,
    requestId,
    ...(error.extra.errors ? { errors: error.extra.errors } : {}),
    ...extensions,
  }
  const headers: Record<string, string> = { 'Content-Type': 'application/problem+json' }
  if (requestId) headers['X-Request-Id'] = requestId
  if (error.extra.retryAfterSeconds !== undefined)
    headers['Retry-After'] = String(error.extra.retryAfterSeconds)
  return new Response(JSON.stringify(body), { status: error.status, headers })
}

const DEPENDENCY_DOWN_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'PROTOCOL_CONNECTION_LOST',
  'PROTOCOL_SEQUENCE_TIMEOUT',
  'ER_CON_COUNT_ERROR',
  'ER_SERVER_SHUTDOWN',
])

/** A connection-level failure of MySQL or Redis: the client gets 503 and may retry, not 500. */
export function isDependencyDown(error: unknown): boolean {
  let current: unknown = error
  for (let depth = 0; depth < 5 && current !== null && typeof current === 'object'; depth++) {
    const { code, name, message } = current as { code?: unknown; name?: unknown; message?: unknown }
    if (typeof code === 'string' && DEPENDENCY_DOWN_CODES.has(code)) return true
    if (name === 'MaxRetriesPerRequestError') return true
    if (
      typeof message === 'string' &&
      /Stream isn't writeable|Connection is closed|Command timed out/.test(message)
    ) {
      return true
    }
    current = (current as { cause?: unknown }).cause
  }
  return false
}
