import { setTimeout as sleep } from 'node:timers/promises'
import { workerNames } from '../../../shared/runtime/discover'
import { type Arrival, consumeDataPlatform } from '../broker'
import { assertInvariants, type BenchContext, expectOnly, GROUP, progress, roundRobin } from '../context'
import { createCpuMeter } from '../cpu'
import type { BenchProduct, Buyer } from '../fixtures'
import { percentile, runPaced, summarize } from '../load'
import { unpublished, waitForEventsSettled } from '../outbox'
import type { ScenarioReport } from '../report'
import { orderRequest } from './orders'

/** docs/events.md: from commit to the message being in data.platform, p99 under 250 ms. */
const MAX_P99_MS = 250
const SAMPLE_EVERY_MS = 500
const ARRIVAL_TIMEOUT_MS = 60_000

type Timed = { eventId: string; userId: number; latencyMs: number }

function parseArrival(arrival: Arrival): Timed | undefined {
  try {
    const body = JSON.parse(arrival.body) as {
      eventId?: unknown
      occurredAt?: unknown
      data?: { userId?: unknown }
    }
    if (typeof body.eventId !== 'string' || typeof body.occurredAt !== 'string') return undefined
    return {
      eventId: body.eventId,
      userId: Number(body.data?.userId),
      latencyMs: arrival.arrivedAt - Date.parse(body.occurredAt),
    }
  } catch {
    return undefined
  }
}

/**
 * 5. Orders at a fixed rate (a share of the maximum the orders scenario measured), and the time from
 * each order's commit to its event's arrival on data.platform, which the bench consumes: arrival time
 * minus the body's occurredAt (same machine, same clock). Meanwhile the outbox's unpublished rows are
 * sampled, to see whether the relay keeps up.
 */
export async function eventLatency(
  ctx: BenchContext,
  fixtures: { products: BenchProduct[]; buyers: Buyer[]; maxOrdersPerSecond: number; brokerUrl: string },
): Promise<ScenarioReport> {
  const { events } = ctx.profile
  const perSecond = Math.max(1, Math.round(fixtures.maxOrdersPerSecond * events.rateShare))
  const backlogSeconds = await waitForEventsSettled(ctx.db, fixtures.brokerUrl)
  const ours = new Set(fixtures.buyers.map((b) => b.userId))
  const arrived = new Map<string, Timed>()
  let duplicates = 0
  let foreign = 0
  const consumer = await consumeDataPlatform(fixtures.brokerUrl, (arrival) => {
    const timed = parseArrival(arrival)
    if (!timed || !ours.has(timed.userId)) foreign++
    else if (arrived.has(timed.eventId)) duplicates++
    else arrived.set(timed.eventId, timed)
  })
  try {
    const purged = await consumer.purge()
    await consumer.start()
    progress(
      `5. event latency: ${perSecond} orders/s (${events.rateShare} x ${fixtures.maxOrdersPerSecond.toFixed(0)}) for ` +
        `${events.seconds} s, consuming data.platform (earlier events settled in ${backlogSeconds.toFixed(1)} s; ` +
        `${purged} purged)`,
    )
    const nextBuyer = roundRobin(fixtures.buyers)
    const nextProduct = roundRobin(fixtures.products)
    const trend: number[] = []
    let sampling: Promise<void> | undefined
    const sampler = setInterval(() => {
      sampling ??= unpublished(ctx.db)
        .then((n) => void trend.push(n))
        .finally(() => {
          sampling = undefined
        })
    }, SAMPLE_EVERY_MS)
    const meter = createCpuMeter(ctx.cpuGroups)
    let atEnd = 0
    let waitedMs = 0
    const sample = await meter.measure(async () => {
      const s = await runPaced({
        port: ctx.via.service,
        perSecond,
        seconds: events.seconds,
        next: () => orderRequest(nextBuyer(), nextProduct().id),
      })
      clearInterval(sampler)
      await sampling
      atEnd = await unpublished(ctx.db)
      const placed = s.statuses['201'] ?? 0
      const waitStarted = performance.now()
      while (arrived.size < placed && performance.now() - waitStarted < ARRIVAL_TIMEOUT_MS) await sleep(50)
      waitedMs = performance.now() - waitStarted
      return s
    })
    clearInterval(sampler)
    expectOnly('event latency orders', sample, ['201'])
    const placed = sample.statuses['201'] ?? 0
    if (arrived.size < placed) {
      throw new Error(
        `event latency: ${placed - arrived.size} of ${placed} events never reached data.platform within ` +
          `${ARRIVAL_TIMEOUT_MS / 1000} s of the last order`,
      )
    }
    const latencies = [...arrived.values()].map((t) => t.latencyMs).sort((a, b) => a - b)
    const p50 = percentile(latencies, 50)
    const p99 = percentile(latencies, 99)
    const max = latencies.at(-1) ?? 0
    progress(
      `  ${placed} orders, ${arrived.size} events: p50 ${p50.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms, max ` +
        `${max.toFixed(0)} ms; unpublished at the end ${atEnd}, during [${trend.join(', ')}]`,
    )
    await assertInvariants(ctx.db, 'the event latency run', {
      productIds: fixtures.products.map((p) => p.id),
      userIds: fixtures.buyers.map((b) => b.userId),
    })
    ctx.checkService('the event latency run')

    const cpu = meter.result()
    const perEvent = (group: string) =>
      `${group} ${(((cpu.cpuSeconds[group] ?? 0) * 1000) / Math.max(1, placed)).toFixed(2)} ms`
    // "Near 0": no more than the orders of a quarter second (the latency bound) waiting, at the end and on
    // average over the run's second half (a growing backlog would show there).
    const bound = Math.max(1, Math.ceil(perSecond * (MAX_P99_MS / 1000)))
    const secondHalf = trend.slice(Math.floor(trend.length / 2))
    const lateMean = secondHalf.reduce((a, b) => a + b, 0) / Math.max(1, secondHalf.length)
    const title = '5. event latency'
    const side = { name: 'service (paced)', serving: GROUP.http, outcome: summarize([sample], '201'), cpu }
    return {
      title,
      method:
        `POST /v1/orders at a fixed ${perSecond} orders/s (an open loop: ${events.rateShare} x the service's ` +
        `orders/s in scenario 3) for ${events.seconds} s over ${fixtures.products.length} products and ` +
        `${fixtures.buyers.length} buyers of its own; the bench consumes data.platform in the bench's vhost and ` +
        `takes each event's arrival time minus its occurredAt; the outbox's unpublished rows sampled every ` +
        `${SAMPLE_EVERY_MS} ms`,
      targets: [
        {
          scenario: title,
          measure: 'commit to arrival on data.platform, p99',
          measured: `${p99.toFixed(0)} ms (p50 ${p50.toFixed(0)}, max ${max.toFixed(0)}; ${placed} events)`,
          target: `< ${MAX_P99_MS} ms`,
          met: p99 < MAX_P99_MS,
        },
        {
          scenario: title,
          measure: 'outbox rows unpublished: at the end; mean over the second half',
          measured: `${atEnd}; ${lateMean.toFixed(1)}`,
          target: `near 0 (<= ${bound}, a quarter second of orders)`,
          met: atEnd <= bound && lateMean <= bound,
        },
      ],
      cpu: [side],
      details: [
        `Unpublished outbox rows every ${SAMPLE_EVERY_MS} ms during the run: ${trend.join(', ') || 'none sampled'}; ` +
          `${atEnd} at its end. Every event arrived ${(waitedMs / 1000).toFixed(1)} s after the last answer ` +
          `(${duplicates} delivered twice${foreign > 0 ? `, ${foreign} of other orders` : ''}). ` +
          `CPU per order over the run and until the last event arrived: ${[GROUP.http, ...workerNames()].map(perEvent).join(', ')}.`,
      ],
    }
  } finally {
    await consumer.close()
  }
}
