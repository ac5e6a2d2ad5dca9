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
import type { Buyer } from '../fixtures'
import { runTimed } from '../load'
import { createRawHotRow } from '../raw-sql'
import { ms, rateVs, type ScenarioReport } from '../report'
import { orderRequest } from './orders'

const MIN_RATE = 0.5
const STRETCH = 1.0

/**
 * 4. One hot product: every connection orders 1 unit of the same product (plenty of stock), against a raw
 * autocommit guarded UPDATE of one row with as many connections.
 */
export async function hotProduct(
  ctx: BenchContext,
  fixtures: { productId: number; buyers: Buyer[]; rawProductId: number; databaseUrl: string },
): Promise<ScenarioReport> {
  const { profile } = ctx
  const connections = profile.hot.connections
  const raw = createRawHotRow(fixtures.databaseUrl, connections)
  try {
    const nextBuyer = roundRobin(fixtures.buyers)
    const serviceRound = (seconds: number) => () =>
      runTimed({
        url: `http://127.0.0.1:${ctx.via.service}`,
        connections,
        seconds,
        next: () => orderRequest(nextBuyer(), fixtures.productId),
      })
    const rawRound = (seconds: number) => () => raw.run(seconds, fixtures.rawProductId)

    progress(`4. hot product: warm-up ${profile.warmupSeconds} s each side`)
    expectOnly('hot product warm-up, service', await serviceRound(profile.warmupSeconds)(), ['201'])
    expectOnly('hot product warm-up, raw UPDATE', await rawRound(profile.warmupSeconds)(), ['ok'])
    progress(
      `4. hot product: ${profile.rounds} rounds of ${profile.roundSeconds} s each side, ${connections} connections`,
    )
    const [service, ceiling] = await alternate(ctx, 'hot product', [
      {
        name: 'service',
        serving: GROUP.http,
        round: serviceRound(profile.roundSeconds),
        allowed: ['201'],
        counted: '201',
      },
      { name: 'raw UPDATE', serving: GROUP.bench, round: rawRound(profile.roundSeconds), allowed: ['ok'] },
    ])
    if (!service || !ceiling) throw new Error('hot product: a side is missing')
    progress(`  service:    ${describeOutcome(service.outcome, 'orders/s')}`)
    progress(`  raw UPDATE: ${describeOutcome(ceiling.outcome, 'updates/s')}`)
    await assertInvariants(ctx.db, 'the hot product', {
      productIds: [fixtures.productId],
      userIds: fixtures.buyers.map((b) => b.userId),
    })
    ctx.checkService('the hot product')

    const rate = service.outcome.perSecond / ceiling.outcome.perSecond
    const title = '4. one hot product'
    return {
      title,
      method:
        `${fixtures.buyers.length} buyers on ${connections} connections each ordering 1 unit of one product ` +
        `(plenty of stock) vs a raw autocommit \`UPDATE products SET stock = stock - 1 WHERE id = ? AND stock >= 1\` ` +
        `on one row of its own from ${connections} connections; ${profile.rounds} rounds of ${profile.roundSeconds} s ` +
        `per side after a ${profile.warmupSeconds} s warm-up each. The raw UPDATE's row is left out of the ` +
        'invariant check (it loses stock without orders)',
      targets: [
        {
          scenario: title,
          measure: 'orders/s, service / raw UPDATE',
          measured: `${rateVs(service, ceiling, 'orders/s')}; p50 ${ms(service.outcome.p50Ms)} / p99 ${ms(service.outcome.p99Ms)} ms${rate >= STRETCH ? '; stretch met' : ''}`,
          target: `>= ${MIN_RATE.toFixed(2)}x (stretch ${STRETCH.toFixed(1)}x)`,
          met: rate >= MIN_RATE,
        },
      ],
      comparisons: [{ scenario: title, unit: 'orders/s', service, ceiling }],
    }
  } finally {
    await raw.close()
  }
}
