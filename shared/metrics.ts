import { subscribe } from 'node:diagnostics_channel'
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client'

/**
 * The MySQL pools (shared/db/client.ts) report a connection refused for exhaustion here: they are built
 * where no metrics registry is known, and Node's diagnostics channels are its way for a component to
 * report to whoever listens, without passing a registry down.
 */
export const DB_CONNECTION_EXHAUSTED_CHANNEL = 'commerce:db:connection-exhausted'
export type DbConnectionExhaustedEvent = {
  pool: 'primary' | 'replica'
  /** retried: refused (too many connections), tried again after a pause; gave_up: the caller got the error. */
  outcome: 'retried' | 'gave_up'
}

/** One registry per process (not prom-client's global), so that tests can build many apps side by side. */
export function createMetrics(defaultLabels: Record<string, string> = {}) {
  const registry = new Registry()
  registry.setDefaultLabels(defaultLabels)
  collectDefaultMetrics({ register: registry })
  const dbConnectionExhausted = new Counter({
    name: 'db_connection_exhausted_total',
    help: 'MySQL connections refused for exhaustion (too many connections, pool queue) or not handed out in time, by pool and outcome (retried, gave_up)',
    labelNames: ['pool', 'outcome'] as const,
    registers: [registry],
  })
  subscribe(DB_CONNECTION_EXHAUSTED_CHANNEL, (message) => {
    const event = message as DbConnectionExhaustedEvent
    dbConnectionExhausted.inc({ pool: event.pool, outcome: event.outcome })
  })
  return {
    dbConnectionExhausted,
    registry,
    /**
     * The text GET /metrics answers with: this process's registry, or, in a worker of `npm start`'s
     * cluster, every process's metrics added up by the primary (shared/runtime/cluster-metrics.ts).
     */
    exposition: (): Promise<string> => registry.metrics(),
    httpDuration: new Histogram({
      name: 'http_request_duration_seconds',
      help: 'HTTP request duration by route pattern',
      labelNames: ['method', 'route', 'status'] as const,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
    cache: new Counter({
      name: 'cache_requests_total',
      help: 'Cache look-ups by cache and outcome (hit, miss, error)',
      labelNames: ['cache', 'outcome'] as const,
      registers: [registry],
    }),
    cacheLoads: new Counter({
      name: 'cache_loads_total',
      help: 'Loads from the source of truth after a cache miss',
      labelNames: ['cache'] as const,
      registers: [registry],
    }),
    orders: new Counter({
      name: 'order_requests_total',
      help: 'Order placements and cancels by outcome (placed, cancelled, replayed, or the refusal code in lower case)',
      labelNames: ['operation', 'outcome'] as const,
      registers: [registry],
    }),
    couponIssues: new Counter({
      name: 'coupon_issue_requests_total',
      help: 'Coupon issue requests by outcome (issued, replayed, sold_out, already_issued, not_issuable, not_found, mysql_sold_out, mysql_already_issued, failed)',
      labelNames: ['outcome'] as const,
      registers: [registry],
    }),
    couponStateRebuilds: new Counter({
      name: 'coupon_state_rebuilds_total',
      help: "Rebuilds of a coupon's Redis issuing state from MySQL (rebuilt, superseded)",
      labelNames: ['outcome'] as const,
      registers: [registry],
    }),
    rateLimitDecisions: new Counter({
      name: 'rate_limit_decisions_total',
      help: 'Rate limit decisions on /v1 requests (error: Redis did not answer and the request was let through)',
      labelNames: ['outcome'] as const,
      registers: [registry],
    }),
    outboxUnpublished: new Gauge({
      name: 'outbox_unpublished_events',
      help: 'Outbox rows not yet confirmed by RabbitMQ, as last counted by the relay sweeper',
      registers: [registry],
    }),
    outboxRequeued: new Counter({
      name: 'outbox_sweeper_requeued_total',
      help: 'Unpublished outbox rows the sweeper had to enqueue or retry (no notify, Redis down, failed job)',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    eventsPublished: new Counter({
      name: 'events_published_total',
      help: 'Relay publish attempts by routing key and outcome (published, already_published, unroutable, failed)',
      labelNames: ['type', 'outcome'] as const,
      registers: [registry],
    }),
    eventPublishLatency: new Histogram({
      name: 'event_commit_to_publish_seconds',
      help: 'From the outbox row (written in the order transaction) to the broker confirm, by routing key',
      labelNames: ['type'] as const,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers: [registry],
    }),
    eventsConsumed: new Counter({
      name: 'events_consumed_total',
      help: 'Messages handled by a consumer by outcome (applied, duplicate, retried, dead_lettered, requeued)',
      labelNames: ['consumer', 'outcome'] as const,
      registers: [registry],
    }),
    orderBatchSize: new Histogram({
      name: 'order_batch_size',
      help: 'Orders placed together in one transaction (group commit; 1 when the shop is quiet)',
      buckets: [1, 2, 4, 8, 16, 32, 64],
      registers: [registry],
    }),
    transactionRetries: new Counter({
      name: 'db_transaction_retries_total',
      help: 'Transactions retried after a deadlock or lock-wait timeout',
      labelNames: ['operation'] as const,
      registers: [registry],
    }),
  }
}

export type Metrics = ReturnType<typeof createMetrics>
