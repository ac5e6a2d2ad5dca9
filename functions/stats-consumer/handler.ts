import type { Deps } from '../../shared/deps'
import { createEventConsumer } from '../../shared/events/consumer'
import { type EventTopology, eventTopology } from '../../shared/events/topology'
import type { RunningWorker } from '../../shared/runtime/discover'
import { applyOrderEvents, STATISTICS_CONSUMER } from '../../shared/stats/sales'

export const STATISTICS_BATCH_LINGER_MS = 50

export type StatsConsumerOptions = { topology?: EventTopology; maxRetries?: number; retryDelayMs?: number }

/**
 * Reads order.completed (docs/events.md) and order.cancelled (ours: cancellations must be subtracted, and the
 * contract's order.completed queue does not receive them; see docs/events.md).
 */
export default function createStatsConsumerWorker(
  deps: Pick<Deps, 'config' | 'db' | 'logger' | 'metrics'>,
  options: StatsConsumerOptions = {},
): RunningWorker {
  const topology = options.topology ?? eventTopology('', deps.config.dataPlatform)
  return createEventConsumer(deps, {
    ...options,
    name: STATISTICS_CONSUMER,
    url: deps.config.rabbitmqUrl,
    topology,
    queues: [topology.queues.orderCompleted, topology.queues.orderCancelled],
    // The popular list is cached for minutes: waiting 50 ms to apply up to 32 events in one transaction
    // costs it nothing, and saves most of the consumer's and MySQL's work per event under load.
    batchLingerMs: STATISTICS_BATCH_LINGER_MS,
    handle: (events) => applyOrderEvents(deps.db, deps.config.businessTimeZone, events),
  })
}
