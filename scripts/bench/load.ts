import { Agent, request as httpRequest } from 'node:http'
import autocannon from 'autocannon'

/** One measured run: every response's latency, the responses by status, and the wall time. */
export type Sample = {
  /** Responses by status, and by problem code for errors: "201", "409 INSUFFICIENT_STOCK". */
  statuses: Record<string, number>
  latenciesMs: number[]
  seconds: number
  /** Connection errors and timeouts: any is a broken run. */
  errors: number
  /** Latencies by status, where the load generator keeps them (runEach: winners and refused buyers apart). */
  latenciesByStatus?: Record<string, number[]>
}

/** One or more samples (interleaved rounds) summed up. */
export type Outcome = {
  statuses: Record<string, number>
  responses: number
  seconds: number
  /** Responses with a counted status per second (every response unless told otherwise). */
  perSecond: number
  p50Ms: number
  p99Ms: number
  maxMs: number
  errors: number
  /** perSecond of each sample, to show how much the rounds disagreed. */
  rounds: number[]
  byStatus: Record<string, { p50Ms: number; p99Ms: number }>
}

export type BenchRequest = {
  method: 'GET' | 'POST'
  path: string
  headers?: Record<string, string>
  body?: string
}

export const statusKey = (status: number, body: string | undefined) => {
  if (status < 400 || body === undefined) return String(status)
  try {
    const code = (JSON.parse(body) as { code?: unknown }).code
    return typeof code === 'string' ? `${status} ${code}` : String(status)
  } catch {
    return String(status)
  }
}

export const count = (statuses: Record<string, number>, key: string) => {
  statuses[key] = (statuses[key] ?? 0) + 1
}

const append = (lists: Record<string, number[]>, key: string, values: number[]) => {
  const list = lists[key] ?? []
  for (const v of values) list.push(v)
  lists[key] = list
}

export const percentile = (sorted: number[], p: number) =>
  sorted.length === 0
    ? 0
    : (sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? 0)

const countOf = (statuses: Record<string, number>, counted?: string) =>
  counted === undefined ? Object.values(statuses).reduce((a, b) => a + b, 0) : (statuses[counted] ?? 0)

/** Sums samples: throughput over their total time, percentiles over every latency of every sample. */
export function summarize(samples: Sample[], counted?: string): Outcome {
  const statuses: Record<string, number> = {}
  for (const s of samples)
    for (const [k, v] of Object.entries(s.statuses)) statuses[k] = (statuses[k] ?? 0) + v
  const latencies = samples.flatMap((s) => s.latenciesMs).sort((a, b) => a - b)
  const seconds = samples.reduce((a, s) => a + s.seconds, 0)
  const pooledByStatus: Record<string, number[]> = {}
  for (const s of samples) {
    for (const [k, v] of Object.entries(s.latenciesByStatus ?? {})) append(pooledByStatus, k, v)
  }
  const byStatus = Object.fromEntries(
    Object.entries(pooledByStatus).map(([k, v]) => {
      const sorted = [...v].sort((a, b) => a - b)
      return [k, { p50Ms: percentile(sorted, 50), p99Ms: percentile(sorted, 99) }]
    }),
  )
  return {
    statuses,
    responses: latencies.length,
    seconds,
    perSecond: seconds > 0 ? countOf(statuses, counted) / seconds : 0,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    maxMs: latencies.at(-1) ?? 0,
    errors: samples.reduce((a, s) => a + s.errors, 0),
    rounds: samples.map((s) => (s.seconds > 0 ? countOf(s.statuses, counted) / s.seconds : 0)),
    byStatus,
  }
}

/**
 * A fixed-duration load with autocannon: `connections` keep-alive connections, each sending its next
 * request as soon as the previous one is answered. `next` builds every request (so each can carry
 * another user's token and another product); bodies are read only to tally problem codes.
 */
export function runTimed(options: {
  url: string
  connections: number
  seconds: number
  next: () => BenchRequest
}): Promise<Sample> {
  const statuses: Record<string, number> = {}
  const latenciesMs: number[] = []
  const started = performance.now()
  return new Promise((resolve, reject) => {
    const instance = autocannon(
      {
        url: options.url,
        connections: options.connections,
        duration: options.seconds,
        timeout: 30,
        requests: [
          {
            setupRequest: (request) => ({ ...request, ...options.next() }),
            onResponse: (status, body) => count(statuses, statusKey(status, body)),
          },
        ],
      },
      (error: unknown, result) => {
        if (error) {
          reject(error instanceof Error ? error : new Error(String(error)))
          return
        }
        resolve({
          statuses,
          latenciesMs,
          seconds: (performance.now() - started) / 1000,
          errors: result.errors + result.timeouts,
        })
      },
    )
    instance.on('response', (_client, _status, _bytes, responseTime) => latenciesMs.push(responseTime))
  })
}

/**
 * A keep-alive HTTP client that tallies every answer: by status (and problem code), with its latency,
 * overall and per status. Node's own http client: the bench's exact-count and paced loads need each
 * request sent once, when the bench says (autocannon builds a request ahead per connection).
 */
function createTally(port: number, maxSockets: number, timeoutMs = 30_000) {
  const agent = new Agent({ keepAlive: true, maxSockets })
  const statuses: Record<string, number> = {}
  const latenciesMs: number[] = []
  const latenciesByStatus: Record<string, number[]> = {}
  let errors = 0
  const send = (req: BenchRequest) =>
    new Promise<void>((resolve) => {
      const sent = performance.now()
      const headers: Record<string, string | number> = { ...req.headers }
      if (req.body !== undefined) headers['Content-Length'] = Buffer.byteLength(req.body)
      const call = httpRequest(
        { host: '127.0.0.1', port, method: req.method, path: req.path, headers, agent },
        (response) => {
          const chunks: Buffer[] = []
          response.on('error', () => {
            errors++
            resolve()
          })
          response.on('data', (chunk: Buffer) => chunks.push(chunk))
          response.on('end', () => {
            const latency = performance.now() - sent
            const key = statusKey(response.statusCode ?? 0, Buffer.concat(chunks).toString('utf8'))
            latenciesMs.push(latency)
            append(latenciesByStatus, key, [latency])
            count(statuses, key)
            resolve()
          })
        },
      )
      call.setTimeout(timeoutMs, () => call.destroy(new Error('timeout')))
      call.on('error', () => {
        errors++
        resolve()
      })
      call.end(req.body)
    })
  return {
    send,
    sample(seconds: number): Sample {
      agent.destroy()
      return { statuses, latenciesMs, seconds, errors, latenciesByStatus }
    },
  }
}

/**
 * Exactly these requests, each sent once, `concurrency` at a time over keep-alive connections; the
 * time is from the first request sent to the last response. For the flash sale and the coupon burst,
 * where every request must be sent exactly once, and for the reads they are compared with.
 */
export async function runEach(options: {
  port: number
  concurrency: number
  requests: BenchRequest[]
  timeoutMs?: number
}): Promise<Sample> {
  const tally = createTally(options.port, options.concurrency, options.timeoutMs)
  let nextIndex = 0
  const worker = async () => {
    while (nextIndex < options.requests.length) {
      const req = options.requests[nextIndex++]
      if (req) await tally.send(req)
    }
  }
  const started = performance.now()
  await Promise.all(Array.from({ length: options.concurrency }, worker))
  return tally.sample((performance.now() - started) / 1000)
}

/**
 * An open-loop load at a fixed rate: `perSecond` requests a second for `seconds`, each sent on time
 * whether or not earlier ones were answered (up to `maxInFlight` open connections), so a slow answer
 * does not slow the load down as it would in a closed loop. Resolves once every request is answered.
 */
export async function runPaced(options: {
  port: number
  perSecond: number
  seconds: number
  next: () => BenchRequest
  maxInFlight?: number
}): Promise<Sample> {
  const tally = createTally(options.port, options.maxInFlight ?? 500)
  const total = Math.round(options.perSecond * options.seconds)
  const inFlight: Array<Promise<void>> = []
  const started = performance.now()
  let sent = 0
  // A timer every few milliseconds sends what is due by then: the rate holds however the timer drifts.
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const due = Math.min(total, Math.floor(((performance.now() - started) / 1000) * options.perSecond))
      for (; sent < due; sent++) inFlight.push(tally.send(options.next()))
      if (sent >= total) {
        clearInterval(timer)
        resolve()
      }
    }, 5)
  })
  await Promise.all(inFlight)
  return tally.sample((performance.now() - started) / 1000)
}
