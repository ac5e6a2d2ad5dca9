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
