import { isDeepStrictEqual } from 'node:util'

/** What the suite sends: the kinds it tallies outcomes by. */
export type RequestKind =
  | 'setup'
  | 'order'
  | 'order-hot'
  | 'charge'
  | 'coupon-issue'
  | 'cancel'
  | 'read'
  | 'replay'
  | 'final-replay'

export type Answer =
  | { status: number; code: string | undefined; body: unknown; replayed: boolean; requestId: string | null }
  | { status: 'timeout' | 'network'; error: string }

export type Request = {
  kind: RequestKind
  method: 'GET' | 'POST'
  path: string
  /** The caller (the token's subject). */
  userId: number
  token: string
  body?: unknown
  key?: string
}

export type Attempt = { request: Request; answer: Answer; sentAt: number; answeredAt: number }

/** A keyed write and every answer it got: its first success is what every later answer must repeat. */
export type KeyedWrite = {
  request: Request
  /** The first 2xx answer, and when it was received. */
  first?: { status: number; body: unknown; at: number }
  /** 2xx answers without Idempotent-Replayed: more than one means the key produced two effects. */
  effects: number
  /** Whether the latest answer said "try again" (or none came). */
  lastTransient: boolean
}

export type ReplayMismatch = {
  key: string
  path: string
  kind: RequestKind
  sentAt: number
  at: number
  expected: string
  got: string
}

const REQUEST_TIMEOUT_MS = 30_000

/**
 * Answers after which the client cannot know what happened, or is told to come back: no answer, any 5xx,
 * 409 IDEMPOTENCY_KEY_IN_USE. A careful client retries them with the same key, which the contract makes
 * safe (a 500 is still counted as a failure of its own).
 */
export const isTransient = (answer: Answer) =>
  typeof answer.status !== 'number' ||
  answer.status >= 500 ||
  (answer.status === 409 && 'code' in answer && answer.code === 'IDEMPOTENCY_KEY_IN_USE')

export const outcomeLabel = (answer: Answer): string =>
  typeof answer.status === 'number'
    ? `${answer.status}${'code' in answer && answer.code ? ` ${answer.code}` : ''}`
    : answer.status

/** `201 {"id":55,…}` or `409 INSUFFICIENT_STOCK`: enough to tell two answers apart in a report. */
const summarise = (status: number, body: unknown) => {
  const code = (body as { code?: unknown } | null)?.code
  return typeof code === 'string' ? `${status} ${code}` : `${status} ${JSON.stringify(body).slice(0, 120)}`
}

/**
 * Sends requests to the service and remembers everything: each attempt with its answer, and for each
 * Idempotency-Key its first success, so that every later answer for that key can be held against it.
 */
export function createClient(baseUrl: string) {
  const attempts: Attempt[] = []
  const keyed = new Map<string, KeyedWrite>()
  const mismatches: ReplayMismatch[] = []

  const send = async (request: Request): Promise<Answer> => {
    const headers: Record<string, string> = { Authorization: `Bearer ${request.token}` }
    if (request.key !== undefined) headers['Idempotency-Key'] = request.key
    if (request.body !== undefined) headers['Content-Type'] = 'application/json'
    const sentAt = Date.now()
    let answer: Answer
    try {
      const response = await fetch(`${baseUrl}${request.path}`, {
        method: request.method,
        headers,
        ...(request.body === undefined ? {} : { body: JSON.stringify(request.body) }),
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      })
      const text = await response.text()
      let body: unknown = text
      try {
        body = JSON.parse(text)
      } catch {
        // kept as text: a non-JSON answer is itself worth seeing in the report
      }
      const code =
        typeof body === 'object' && body !== null && typeof (body as { code?: unknown }).code === 'string'
          ? (body as { code: string }).code
          : undefined
      answer = {
        status: response.status,
        code,
        body,
        replayed: response.headers.get('Idempotent-Replayed') === 'true',
        requestId: response.headers.get('X-Request-Id'),
      }
    } catch (error) {
      const name = error instanceof Error ? error.name : ''
      answer = {
        status: name === 'TimeoutError' ? 'timeout' : 'network',
        error:
          error instanceof Error ? `${error.message} ${String(error.cause ?? '')}`.trim() : String(error),
      }
    }
    attempts.push({ request, answer, sentAt, answeredAt: Date.now() })
    if (request.key !== undefined) record(request, answer, sentAt)
    return answer
  }

  const record = (request: Request, answer: Answer, sentAt: number) => {
    // Keys are unique per run (random), so the key alone names the request.
    const key = request.key ?? ''
    let write = keyed.get(key)
    if (write === undefined) {
      write = { request, effects: 0, lastTransient: false }
      keyed.set(key, write)
    }
    write.lastTransient = isTransient(answer)
    if (typeof answer.status !== 'number' || !('code' in answer)) return
    const ok = answer.status >= 200 && answer.status < 300
    if (ok && !answer.replayed) write.effects++
    const first = write.first
    if (first === undefined) {
      if (ok) write.first = { status: answer.status, body: answer.body, at: Date.now() }
      return
    }
    if (isTransient(answer)) return
    const same = answer.status === first.status && isDeepStrictEqual(answer.body, first.body)
    if (!same || !answer.replayed) {
      mismatches.push({
        key: request.key ?? '',
        path: request.path,
        kind: request.kind,
        sentAt,
        at: Date.now(),
        expected: `${summarise(first.status, first.body)} with Idempotent-Replayed: true`,
        got: `${summarise(answer.status, answer.body)}${answer.replayed ? ' (replayed)' : ' (not marked replayed)'}`,
      })
    }
  }

  return { send, attempts, keyed, mismatches }
}

export type Client = ReturnType<typeof createClient>
