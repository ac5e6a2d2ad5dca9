import { setTimeout as sleep } from 'node:timers/promises'
import type { Db } from '../../shared/db/client'
import { eventTopology } from '../../shared/events/topology'
import { readyMessages } from './broker'

/** Outbox rows not yet published by the relay (the service's; the raw ceiling writes its own as published). */
export async function unpublished(db: Db): Promise<number> {
  const [rows] = (await db.execute(
    'SELECT COUNT(*) AS n FROM outbox WHERE published_at IS NULL',
  )) as unknown as [Array<{ n: number }>]
  return Number(rows[0]?.n ?? 0)
}

/**
 * Waits until the relay has published every outbox row and the statistics consumer has taken every
 * order.completed message, so the CPU they spent on a scenario's orders can be put beside those orders.
 * Returns how long that took.
 */
export async function waitForEventsSettled(db: Db, brokerUrl: string, timeoutMs = 120_000): Promise<number> {
  const started = performance.now()
  const deadline = started + timeoutMs
  const queue = eventTopology().queues.orderCompleted
  for (;;) {
    const left = await unpublished(db)
    const ready = left === 0 ? await readyMessages(brokerUrl, queue) : -1
    if (left === 0 && ready === 0) return (performance.now() - started) / 1000
    if (performance.now() > deadline) {
      throw new Error(
        `the events did not settle in ${timeoutMs / 1000} s: ${left} outbox rows unpublished, ` +
          `${ready < 0 ? 'unknown' : ready} messages waiting in ${queue}`,
      )
    }
    await sleep(200)
  }
}
