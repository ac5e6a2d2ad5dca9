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
import { type BenchRequest, runTimed } from '../load'
import { rateVs, type ScenarioReport } from '../report'

/** The targets for the cached read, against the bare Hono app behind the same nginx. */
const MIN_RATE = 0.7
const MAX_P99 = 1.5

/**
 * 1. Cached GET /v1/products/{id}, round-robin over the bench's products, against a cluster of bare Hono
 * workers (same process count) answering a constant of the same size, through the same nginx.
 */
export async function productRead(
  ctx: BenchContext,
  productIds: number[],
  bodyBytes: number,
): Promise<ScenarioReport> {
  const { profile } = ctx
  const next = roundRobin(productIds)
  const read = (): BenchRequest => ({ method: 'GET', path: `/v1/products/${next()}` })
  const round = (port: number, seconds: number) => () =>
    runTimed({ url: `http://127.0.0.1:${port}`, connections: profile.connections, seconds, next: read })

  progress(`1. product read: warm-up ${profile.warmupSeconds} s each side`)
  expectOnly('read warm-up, ceiling', await round(ctx.via.ceiling, profile.warmupSeconds)(), ['200'])
  expectOnly('read warm-up, service', await round(ctx.via.service, profile.warmupSeconds)(), ['200'])
  progress(
    `1. product read: ${profile.rounds} rounds of ${profile.roundSeconds} s each side, ${profile.connections} connections`,
  )
  const [ceiling, service] = await alternate(ctx, 'product read', [
    {
      name: 'bare Hono',
      serving: GROUP.ceiling,
      round: round(ctx.via.ceiling, profile.roundSeconds),
      allowed: ['200'],
    },
    {
      name: 'service',
      serving: GROUP.http,
      round: round(ctx.via.service, profile.roundSeconds),
      allowed: ['200'],
    },
  ])
  if (!ceiling || !service) throw new Error('product read: a side is missing')
  progress(`  bare Hono: ${describeOutcome(ceiling.outcome, 'req/s')}`)
  progress(`  service:   ${describeOutcome(service.outcome, 'req/s')}`)
  await assertInvariants(ctx.db, 'the product read', { productIds })
  ctx.checkService('the product read')

  const rate = service.outcome.perSecond / ceiling.outcome.perSecond
  const p99 = service.outcome.p99Ms / ceiling.outcome.p99Ms
  const title = '1. product read'
  return {
    title,
    method:
      `cached GET /v1/products/{id} round-robin over ${productIds.length} products (${bodyBytes}-byte JSON) ` +
      `vs a bare Hono app (a cluster of as many workers, answering a constant of the same size) behind the same nginx; ` +
      `${profile.connections} connections, ${profile.rounds} rounds of ${profile.roundSeconds} s per side after a ` +
      `${profile.warmupSeconds} s warm-up each`,
    targets: [
      {
        scenario: title,
        measure: 'req/s, service / bare Hono',
        measured: rateVs(service, ceiling, 'req/s'),
        target: `>= ${MIN_RATE.toFixed(2)}x`,
        met: rate >= MIN_RATE,
      },
      {
        scenario: title,
        measure: 'p99, service / bare Hono',
        measured: `${p99.toFixed(2)}x (${service.outcome.p99Ms.toFixed(1)} vs ${ceiling.outcome.p99Ms.toFixed(1)} ms)`,
        target: `<= ${MAX_P99.toFixed(1)}x`,
        met: p99 <= MAX_P99,
      },
    ],
    comparisons: [{ scenario: title, unit: 'req/s', service, ceiling }],
  }
}
