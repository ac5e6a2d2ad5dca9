import { setTimeout as sleep } from 'node:timers/promises'
import { assertInvariants, type BenchContext, expectOnly, GROUP, progress } from '../context'
import { createCpuMeter } from '../cpu'
import type { Buyer } from '../fixtures'
import { runEach, type Sample, summarize } from '../load'
import { ms, type ScenarioReport } from '../report'
import { orderRequest } from './orders'

const SOLD_OUT = '409 INSUFFICIENT_STOCK'

/**
 * 6. Flash sales with the stock gate (the default): each a fresh product of `stock` units and fresh
 * buyers each funded for exactly one, every buyer ordering once, `concurrency` at a time. Each must sell
 * exactly its stock and leave 0.
 */
export async function flashSales(
  ctx: BenchContext,
  sales: Array<{ productId: number; buyers: Buyer[] }>,
): Promise<ScenarioReport> {
  const { flash } = ctx.profile
  const meter = createCpuMeter(ctx.cpuGroups)
  const samples: Sample[] = []
  for (const [i, sale] of sales.entries()) {
    const label = `flash sale ${i + 1}/${sales.length}`
    progress(
      `6. ${label}: ${sale.buyers.length} buyers, stock ${flash.stock}, ${flash.concurrency} at a time`,
    )
    await sleep(ctx.profile.settleMs)
    const s = await meter.measure(() =>
      runEach({
        port: ctx.via.service,
        concurrency: flash.concurrency,
        requests: sale.buyers.map((b) => orderRequest(b, sale.productId)),
      }),
    )
    expectOnly(label, s, ['201', SOLD_OUT])
    const sold = s.statuses['201'] ?? 0
    const [rows] = (await ctx.db.execute(
      `SELECT stock FROM products WHERE id = ${Number(sale.productId)}`,
    )) as unknown as [Array<{ stock: number }>]
    if (sold !== flash.stock || rows[0]?.stock !== 0) {
      throw new Error(
        `${label}: ${sold} orders succeeded and stock ${rows[0]?.stock} is left; expected ${flash.stock} and 0`,
      )
    }
    progress(`  whole sale ${s.seconds.toFixed(2)} s, ${sold} sold, stock 0`)
    await assertInvariants(ctx.db, label, {
      productIds: [sale.productId],
      userIds: sale.buyers.map((b) => b.userId),
    })
    samples.push(s)
  }
  ctx.checkService('the flash sales')
  const outcome = summarize(samples)
  const byStatus = (key: string) => {
    const l = outcome.byStatus[key]
    return l ? `${ms(l.p50Ms)} / ${ms(l.p99Ms)} ms` : 'n/a'
  }
  const title = '6. flash sale'
  return {
    title,
    method:
      `stock ${flash.stock}, ${flash.buyers} distinct buyers each funded for exactly one unit, each ordering once, ` +
      `${flash.concurrency} at a time, a fresh product and fresh buyers per sale; ${sales.length} sale(s), stock gate ` +
      'on (the default). The gate-off variant and its second service are no longer run (see Method)',
    targets: [
      {
        scenario: title,
        measure: 'units sold; stock left',
        measured: `exactly ${flash.stock} and 0 in each of ${sales.length}`,
        target: `exactly ${flash.stock}; 0`,
        met: true,
      },
    ],
    cpu: [{ name: 'service', serving: GROUP.http, outcome, cpu: meter.result() }],
    details: [
      `Whole sale ${samples.map((s) => `${s.seconds.toFixed(2)} s`).join(', ')}; latency p50 / p99: all ` +
        `${ms(outcome.p50Ms)} / ${ms(outcome.p99Ms)} ms, 201 ${byStatus('201')}, 409 ${byStatus(SOLD_OUT)}.`,
    ],
  }
}
