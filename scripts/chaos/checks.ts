import { readFileSync } from 'node:fs'
import { type SQL, sql } from 'drizzle-orm'
import type { Db } from '../../shared/db/client'
import { checkInvariants } from '../../shared/invariants/check'
import { type Attempt, type Client, outcomeLabel } from './client'
import type { FaultRecord } from './faults'
import type { ObservedEvent } from './observer'

export type Check = { name: string; ok: boolean; detail: string[] }

type Row = Record<string, unknown>
const rows = async (db: Db, query: SQL) => ((await db.execute(query)) as unknown as [Row[]])[0]

const SAMPLES = 5

const sample = <T>(items: T[], show: (item: T) => string) => [
  ...items.slice(0, SAMPLES).map(show),
  ...(items.length > SAMPLES ? [`… and ${items.length - SAMPLES} more`] : []),
]

const body = (attempt: Attempt) =>
  'body' in attempt.answer ? (attempt.answer.body as Record<string, unknown> | null) : null

/**
 * Where a request (sent at `from`, answered at `to`) falls in the run: in flight during a fault, or
 * (how long) after which heal.
 */
export function moment(from: number, to: number, faults: FaultRecord[], precise = false): string {
  const during = faults.find((f) => f.startedAt <= to && from <= f.healedAt)
  if (during) return `during ${during.kind} ${during.dependency}`
  const before = faults.filter((f) => f.healedAt < from).at(-1)
  if (!before) return 'before the first fault'
  const after = precise ? `${((from - before.healedAt) / 1000).toFixed(1)} s ` : ''
  return `${after}after ${before.kind} ${before.dependency} healed`
}

/** Counts of labels, most frequent first, one line each. */
const tally = (labels: string[]) => {
  const counts = new Map<string, number>()
  for (const label of labels) counts.set(label, (counts.get(label) ?? 0) + 1)
  return [...counts].sort((a, b) => b[1] - a[1]).map(([label, n]) => `  ${n} × ${label}`)
}

/** No answer may be a 5xx other than 503 (docs/api.md: no client input and no dependency failure is a 500). */
export function checkNoServerErrors(client: Client, logFile: string, faults: FaultRecord[]): Check {
  const bad = client.attempts.filter(
    (a) => typeof a.answer.status === 'number' && a.answer.status >= 500 && a.answer.status !== 503,
  )
  const byRoute = new Map<string, number>()
  for (const a of bad) {
    const label = `${a.request.method} ${a.request.kind} ${outcomeLabel(a.answer)}`
    byRoute.set(label, (byRoute.get(label) ?? 0) + 1)
  }
  return {
    name: 'no response was a 500',
    ok: bad.length === 0,
    detail:
      bad.length === 0
        ? [`${client.attempts.length} answers, none a 5xx other than 503`]
        : [
            `${bad.length} answers were a 5xx other than 503:`,
            ...[...byRoute].map(([label, n]) => `  ${n} × ${label}`),
            'when the requests were sent:',
            ...tally(bad.map((a) => moment(a.sentAt, a.answeredAt, faults, true))),
            'what the service logged for them (most frequent first):',
            ...loggedErrors(
              logFile,
              new Set(bad.map((a) => ('requestId' in a.answer ? a.answer.requestId : null))),
            ),
          ],
  }
}

/** The service's error lines for the given request ids, grouped by message, most frequent first. */
export function loggedErrors(logFile: string, requestIds: Set<string | null>): string[] {
  const counts = new Map<string, number>()
  let text = ''
  try {
    text = readFileSync(logFile, 'utf8')
  } catch {
    return ['  (no service log)']
  }
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue
    let entry: Record<string, unknown>
    try {
      entry = JSON.parse(line) as Record<string, unknown>
    } catch {
      continue
    }
    if (entry.level !== 'error' || !requestIds.has(String(entry.requestId))) continue
    const error = (entry.error ?? {}) as { message?: unknown; cause?: unknown; code?: unknown }
    const message = `${String(entry.message)}: ${String(error.message ?? '').slice(0, 200)}${
      error.cause ? ` (cause: ${String(error.cause).slice(0, 160)})` : ''
    }${error.code ? ` [${String(error.code)}]` : ''}`
    const oneLine = message.replace(/\s+/g, ' ')
    counts.set(oneLine, (counts.get(oneLine) ?? 0) + 1)
  }
  const sorted = [...counts].sort((a, b) => b[1] - a[1])
  return sorted.length === 0
    ? ['  (no matching error lines in the service log)']
    : sorted.slice(0, 8).map(([message, n]) => `  ${n} × ${message}`)
}

/** A request the service never answered (a timeout, a reset) is a client left not knowing what happened. */
export function checkEveryRequestAnswered(client: Client): Check {
  const unanswered = client.attempts.filter((a) => typeof a.answer.status !== 'number')
  return {
    name: 'every request got an HTTP answer',
    ok: unanswered.length === 0,
    detail:
      unanswered.length === 0
        ? ['no timeouts, no dropped connections']
        : [
            `${unanswered.length} requests got no answer:`,
            ...sample(
              unanswered,
              (a) => `  ${a.request.method} ${a.request.path}: ${'error' in a.answer ? a.answer.error : ''}`,
            ),
          ],
  }
}

export function checkReplays(client: Client, faults: FaultRecord[]): Check {
  const replays = client.attempts.filter(
    (a) => a.request.kind === 'replay' || a.request.kind === 'final-replay',
  ).length
  const keysWithTwoEffects = [...client.keyed.values()].filter((write) => write.effects > 1)
  const ok = client.mismatches.length === 0 && keysWithTwoEffects.length === 0
  const byKind = new Map<string, number>()
  for (const m of client.mismatches) {
    const label = `${m.path.replace(/\/\d+/g, '/{id}')}: later ${m.got.replace(/ \{.*\}/, '')}`
    byKind.set(label, (byKind.get(label) ?? 0) + 1)
  }
  return {
    name: 'every replay matched its first answer; no key had two effects',
    ok,
    detail: [
      `${replays} deliberate replays, ${client.keyed.size} keys; ${client.mismatches.length} answers differed from their key's first success`,
      ...[...byKind].sort((a, b) => b[1] - a[1]).map(([label, n]) => `  ${n} × ${label}`),
      ...(client.mismatches.length > 0
        ? [
            'by kind of resend and moment:',
            ...tally(client.mismatches.map((m) => `${m.kind}, ${moment(m.sentAt, m.at, faults)}`)),
          ]
        : []),
      ...(client.mismatches.length > 0 ? ['for example:'] : []),
      ...sample(client.mismatches, (m) => `  ${m.path} key ${m.key}: first ${m.expected}; later ${m.got}`),
      ...(keysWithTwoEffects.length > 0
        ? [
            `${keysWithTwoEffects.length} keys were answered as a new effect more than once:`,
            ...sample(keysWithTwoEffects, (w) => `  ${w.request.path} key ${w.request.key} × ${w.effects}`),
          ]
        : []),
    ],
  }
}

/** Every 2xx the service gave for a write is in MySQL afterwards. */
export async function checkDurable(db: Db, client: Client): Promise<Check> {
  const successes = client.attempts.filter(
    (a) =>
      a.request.method === 'POST' &&
      typeof a.answer.status === 'number' &&
      a.answer.status >= 200 &&
      a.answer.status < 300,
  )
  const missing: string[] = []
  const ids = (kind: (a: Attempt) => boolean, field: string) => [
    ...new Set(successes.filter(kind).map((a) => Number(body(a)?.[field]))),
  ]
  const isOrder = (a: Attempt) => a.request.path === '/v1/orders'
  const isCancel = (a: Attempt) => a.request.path.endsWith('/cancel')
  const isCharge = (a: Attempt) => a.request.path.endsWith('/balance/charge')
  const isIssue = (a: Attempt) => a.request.path.endsWith('/issue')

  const idList = (list: number[]) => sql.join(list.length > 0 ? list : [0], sql`, `)
  const orderIds = ids(isOrder, 'id')
  const orders = new Map(
    (
      await rows(db, sql`SELECT id, user_id, total, status FROM orders WHERE id IN (${idList(orderIds)})`)
    ).map((r) => [Number(r.id), r]),
  )
  for (const a of successes.filter(isOrder)) {
    const answered = body(a)
    const row = orders.get(Number(answered?.id))
    if (!row || Number(row.user_id) !== a.request.userId || Number(row.total) !== Number(answered?.total)) {
      missing.push(
        `order ${String(answered?.id)} answered ${outcomeLabel(a.answer)} is not in MySQL as answered`,
      )
    }
  }
  const cancelled = new Set(
    (
      await rows(
        db,
        sql`SELECT id FROM orders WHERE status = 'CANCELLED' AND id IN (${idList(ids(isCancel, 'id'))})`,
      )
    ).map((r) => Number(r.id)),
  )
  for (const a of successes.filter(isCancel)) {
    if (!cancelled.has(Number(body(a)?.id)))
      missing.push(`cancel of order ${String(body(a)?.id)} is not in MySQL`)
  }
  const userIds = [...new Set(successes.filter(isCharge).map((a) => a.request.userId))]
  const charges = new Set(
    (
      await rows(
        db,
        sql`SELECT user_id, amount, balance_after FROM balance_ledger WHERE type = 'CHARGE' AND user_id IN (${idList(userIds)})`,
      )
    ).map((r) => `${r.user_id}/${r.amount}/${r.balance_after}`),
  )
  for (const a of successes.filter(isCharge)) {
    const amount = (a.request.body as { amount?: unknown } | undefined)?.amount
    if (!charges.has(`${a.request.userId}/${String(amount)}/${String(body(a)?.balance)}`)) {
      missing.push(
        `charge of ${String(amount)} to user ${a.request.userId} (balance ${String(body(a)?.balance)}) has no ledger entry`,
      )
    }
  }
  const issued = new Map(
    (
      await rows(
        db,
        sql`SELECT id, user_id, coupon_id FROM user_coupons WHERE id IN (${idList(ids(isIssue, 'userCouponId'))})`,
      )
    ).map((r) => [Number(r.id), `${r.user_id}/${r.coupon_id}`]),
  )
  for (const a of successes.filter(isIssue)) {
    const answered = body(a)
    if (issued.get(Number(answered?.userCouponId)) !== `${a.request.userId}/${String(answered?.couponId)}`) {
      missing.push(`user coupon ${String(answered?.userCouponId)} is not in MySQL as answered`)
    }
  }
  // The other way round: an order in MySQL that no 2xx reported must come from a request whose outcome
  // the client could not know (no key, and answered 5xx or not at all; or keyed and never resolved).
  // More than that would be a refusal (a 4xx) that left an order behind.
  const answered = new Set(orderIds)
  const unreported = (await rows(db, sql`SELECT id FROM orders`)).filter((r) => !answered.has(Number(r.id)))
  const unknowable =
    client.attempts.filter(
      (a) =>
        isOrder(a) &&
        a.request.key === undefined &&
        (typeof a.answer.status !== 'number' || a.answer.status >= 500),
    ).length +
    [...client.keyed.values()].filter(
      (w) => w.request.path === '/v1/orders' && w.first === undefined && w.lastTransient,
    ).length
  if (unreported.length > unknowable) {
    missing.push(
      `${unreported.length} orders in MySQL were never reported by a 2xx, but only ${unknowable} requests had an unknowable outcome (orders ${unreported
        .slice(0, SAMPLES)
        .map((r) => String(r.id))
        .join(', ')})`,
    )
  }
  return {
    name: 'every 2xx is durable (found in MySQL), and no refusal left an order behind',
    ok: missing.length === 0,
    detail: [
      `${successes.length} successful writes checked: ${orderIds.length} orders, ${cancelled.size} cancels, ${userIds.length} users' charges, ${issued.size} coupon issues`,
      `${unreported.length} orders never reported by a 2xx; ${unknowable} order requests had an outcome their client could not know`,
      ...sample(missing, (m) => `  ${m}`),
    ],
  }
}

export async function checkSpecInvariants(db: Db): Promise<Check> {
  const violations = await checkInvariants(db)
  return {
    name: 'the invariants of docs/invariants.md hold (shared/invariants/check.ts)',
    ok: violations.length === 0,
    detail:
      violations.length === 0
        ? ['stock, balances, coupons and outbox rows all agree']
        : sample(violations, (v) => `  ${v}`),
  }
}

type OrderRow = { id: number; status: string }

export async function committedOrders(db: Db): Promise<OrderRow[]> {
  return (await rows(db, sql`SELECT id, status FROM orders`)).map((r) => ({
    id: Number(r.id),
    status: String(r.status),
  }))
}

/** An outbox row whose event has not been seen on the observer's queue yet. */
export type PendingEvent = { eventId: string; published: boolean }

/**
 * Outbox rows (committed up to `until`, or all) not yet published, or published but not yet seen on the
 * observer's queue.
 */
export async function pendingEvents(
  db: Db,
  observer: { events: ObservedEvent[] },
  until?: number,
): Promise<PendingEvent[]> {
  const seen = new Set(observer.events.map((event) => event.eventId))
  return (await committedEvents(db, until)).filter((row) => !row.published || !seen.has(row.eventId))
}

/** Every outbox row committed up to `until`, or all. */
export async function committedEvents(db: Db, until?: number): Promise<PendingEvent[]> {
  const found = await rows(
    db,
    until === undefined
      ? sql`SELECT event_id, published_at FROM outbox`
      : sql`SELECT event_id, published_at FROM outbox WHERE created_at <= ${new Date(until)}`,
  )
  return found.map((row) => ({ eventId: String(row.event_id), published: row.published_at !== null }))
}

/** What must have reached data.platform: one order.completed per order, one order.cancelled per cancelled one. */
function eventProblems(orders: OrderRow[], events: ObservedEvent[], outbox: Map<string, OutboxRow>) {
  const seen = new Map<string, Set<string>>()
  for (const event of events) {
    const slot = `${event.orderId}/${event.type}`
    seen.set(slot, (seen.get(slot) ?? new Set()).add(event.eventId))
  }
  const known = new Set(orders.map((o) => o.id))
  const problems: string[] = []
  for (const order of orders) {
    const expected =
      order.status === 'CANCELLED' ? ['order.completed', 'order.cancelled'] : ['order.completed']
    for (const type of ['order.completed', 'order.cancelled']) {
      const ids = seen.get(`${order.id}/${type}`) ?? new Set()
      const want = expected.includes(type) ? 1 : 0
      const row = outbox.get(`${order.id}/${type}`)
      if (ids.size !== want) {
        const state = row
          ? `its outbox row ${row.eventId} (created ${row.createdAt}) is ${row.publishedAt ? `marked published at ${row.publishedAt}` : 'unpublished'} after ${row.attempts} failed attempts`
          : 'it has no outbox row'
        problems.push(
          `order ${order.id} (${order.status}): ${ids.size} distinct ${type} events, expected ${want}; ${state}`,
        )
      }
      for (const id of ids) {
        if (row?.eventId !== id)
          problems.push(`order ${order.id}: ${type} event ${id} is not its outbox row's`)
      }
    }
  }
  for (const event of events) {
    if (!known.has(event.orderId))
      problems.push(`${event.type} event ${event.eventId} names order ${event.orderId}, never committed`)
  }
  return problems
}

type OutboxRow = { eventId: string; createdAt: string; publishedAt: string | null; attempts: number }

/** The outbox rows by `order id/type`. */
export async function outboxRows(db: Db): Promise<Map<string, OutboxRow>> {
  const iso = (value: unknown) => (value instanceof Date ? value.toISOString() : String(value))
  return new Map(
    (
      await rows(db, sql`SELECT aggregate_id, type, event_id, created_at, published_at, attempts FROM outbox`)
    ).map((r) => [
      `${r.aggregate_id}/${r.type}`,
      {
        eventId: String(r.event_id),
        createdAt: iso(r.created_at),
        publishedAt: r.published_at === null ? null : iso(r.published_at),
        attempts: Number(r.attempts),
      },
    ]),
  )
}

export function checkEvents(
  orders: OrderRow[],
  events: ObservedEvent[],
  outbox: Map<string, OutboxRow>,
  source: string,
): Check {
  const problems = eventProblems(orders, events, outbox)
  const deliveries = events.length
  const distinct = new Set(events.map((e) => e.eventId)).size
  return {
    name: 'every committed order has exactly one event of each kind on data.platform (after dedupe)',
    ok: problems.length === 0,
    detail: [
      `${orders.length} orders, ${orders.filter((o) => o.status === 'CANCELLED').length} cancelled; ${distinct} distinct events in ${deliveries} deliveries, read from ${source}`,
      ...sample(problems, (p) => `  ${p}`),
    ],
  }
}
