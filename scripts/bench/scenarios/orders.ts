import { workerNames } from '../../../shared/runtime/discover'
import {
  alternate,
  assertInvariants,
  type BenchContext,
  describeOutcome,
  expectOnly,
  GROUP,
  progress,
  roundRobin,
} from '../context'
import { createCpuMeter } from '../cpu'
import type { BenchProduct, Buyer } from '../fixtures'
import { type BenchRequest, runTimed, type Sample } from '../load'
import { waitForEventsSettled } from '../outbox'
import { createRawOrders } from '../raw-sql'
import { cpuMsPer, ms, rateVs, type ScenarioReport } from '../report'

const MIN_RATE = 0.5
/** The target for the serving processes: at most about 1.2 ms of their CPU per order. */
const MAX_CPU_MS = 1.2

export const orderRequest = (buyer: Buyer, productId: number): BenchRequest => ({
  method: 'POST',
  path: '/v1/orders',
  headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${buyer.token}` },
  body: JSON.stringify({ items: [{ productId, quantity: 1 }] }),
})

export type OrdersResult = { report: ScenarioReport; servicePerSecond: number }

/**
 * 3. POST /v1/orders without contention (each connection its own buyer and product at any moment)
 * against the minimal order transaction in raw mysql2 at the same concurrency, on products and buyers of
 * its own. The relay and the statistics consumer run meanwhile, as under `npm start`; their CPU is
 * measured from the first order to the last event taken, and put beside every order the service placed.
 */
export async function orders(
  ctx: BenchContext,
  fixtures: {
    service: { products: BenchProduct[]; buyers: Buyer[] }
    raw: { products: BenchProduct[]; buyers: Buyer[] }
    databaseUrl: string
    brokerUrl: string
  },
): Promise<OrdersResult> {
  const { profile } = ctx
  const loops = profile.connections
  const raw = createRawOrders(fixtures.databaseUrl, loops)
  try {
    const nextBuyer = roundRobin(fixtures.service.buyers)
    const nextProduct = roundRobin(fixtures.service.products)
    const serviceRound = (seconds: number) => () =>
      runTimed({
        url: `http://127.0.0.1:${ctx.via.service}`,
        connections: profile.connections,
        seconds,
        next: () => orderRequest(nextBuyer(), nextProduct().id),
      })
    const nextRawBuyer = roundRobin(fixtures.raw.buyers)
    const nextRawProduct = roundRobin(fixtures.raw.products)
    const rawRound = (seconds: number) => () =>
      raw.run(seconds, () => ({ userId: nextRawBuyer().userId, product: nextRawProduct() }))

    // The workers' CPU: from the first order to the last event taken (they run behind the orders).
    const window = createCpuMeter(ctx.cpuGroups)
    const placed: Sample[] = []
    let settleSeconds = 0
    const sides = await window.measure(async () => {
      progress(`3. orders: warm-up ${profile.warmupSeconds} s each side`)
      const warm = await serviceRound(profile.warmupSeconds)()
      expectOnly('order warm-up, service', warm, ['201'])
      placed.push(warm)
      expectOnly('order warm-up, raw SQL', await rawRound(profile.warmupSeconds)(), ['ok'])
      progress(
        `3. orders: ${profile.rounds} rounds of ${profile.roundSeconds} s each side, ${profile.connections} connections ` +
          `(raw SQL: ${loops} loops, a pool of ${loops})`,
      )
      const measured = await alternate(ctx, 'orders', [
        {
          name: 'service',
          serving: GROUP.http,
          round: async () => {
            const s = await serviceRound(profile.roundSeconds)()
            placed.push(s)
            return s
          },
          allowed: ['201'],
          counted: '201',
        },
        { name: 'raw SQL', serving: GROUP.bench, round: rawRound(profile.roundSeconds), allowed: ['ok'] },
      ])
      settleSeconds = await waitForEventsSettled(ctx.db, fixtures.brokerUrl)
      return measured
    })
    const [service, ceiling] = sides
    if (!service || !ceiling) throw new Error('orders: a side is missing')
    progress(`  service: ${describeOutcome(service.outcome, 'orders/s')}`)
    progress(`  raw SQL: ${describeOutcome(ceiling.outcome, 'orders/s')}`)
    progress(`  events settled ${settleSeconds.toFixed(1)} s after the last round`)
    await assertInvariants(ctx.db, 'the orders', {
      productIds: [...fixtures.service.products, ...fixtures.raw.products].map((p) => p.id),
      userIds: fixtures.service.buyers.map((b) => b.userId),
    })
    ctx.checkService('the orders')

    const ordersPlaced = placed.reduce((sum, s) => sum + (s.statuses['201'] ?? 0), 0)
    const workers = window.result()
    const workerMs = workerNames().map(
      (name) =>
        `${name} ${(((workers.cpuSeconds[name] ?? 0) * 1000) / Math.max(1, ordersPlaced)).toFixed(2)} ms`,
    )
    const httpMs = cpuMsPer(service)
    const rate = service.outcome.perSecond / ceiling.outcome.perSecond
    const title = '3. orders'
    return {
      servicePerSecond: service.outcome.perSecond,
      report: {
        title,
        method:
          `POST /v1/orders, 1 unit, round-robin over ${fixtures.service.products.length} products and ` +
          `${fixtures.service.buyers.length} funded buyers, ${profile.connections} connections, vs the minimal order ` +
          `transaction in raw mysql2 (BEGIN; guarded stock UPDATE; guarded balance UPDATE; INSERT order; INSERT line; ` +
          `INSERT outbox; COMMIT) in ${loops} loops over a pool of ${loops}, on ${fixtures.raw.products.length} products ` +
          `and ${fixtures.raw.buyers.length} buyers of its own; ${profile.rounds} rounds of ${profile.roundSeconds} s per ` +
          `side after a ${profile.warmupSeconds} s warm-up each`,
        targets: [
          {
            scenario: title,
            measure: 'orders/s, service / raw SQL',
            measured: `${rateVs(service, ceiling, 'orders/s')}; p50 ${ms(service.outcome.p50Ms)} / p99 ${ms(service.outcome.p99Ms)} ms`,
            target: `>= ${MIN_RATE.toFixed(2)}x`,
            met: rate >= MIN_RATE,
          },
          {
            scenario: title,
            measure: 'HTTP workers CPU per order',
            measured: `${httpMs.toFixed(2)} ms (workers beside them: ${workerMs.join(', ')})`,
            target: `<= ~${MAX_CPU_MS.toFixed(1)} ms`,
            met: httpMs <= MAX_CPU_MS,
          },
        ],
        comparisons: [{ scenario: title, unit: 'orders/s', service, ceiling }],
        details: [
          `CPU per order of the HTTP workers is their CPU over the service's rounds divided by the orders placed in them. ` +
            `The workers run behind the orders, so theirs is taken from the first order to the moment every event ` +
            `was published and taken by the statistics consumer (${settleSeconds.toFixed(1)} s after the last round), ` +
            `divided by all ${ordersPlaced.toLocaleString('en-US')} orders the service placed: ${workerMs.join(', ')}.`,
        ],
      },
    }
  } finally {
    await raw.close()
  }
}
