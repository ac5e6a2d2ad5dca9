import type { Config } from './config'
import type { Db } from './db/client'
import type { OutboxNotifier } from './events/outbox'
import type { Logger } from './logger'
import type { Metrics } from './metrics'
import type { Redis } from './redis/client'

/**
 * Everything a function or worker may use, built once per process by the entry point and passed in.
 * A function declares the part it needs (`Pick<Deps, 'db' | 'redis'>`) and its tests build exactly that.
 */
export type Deps = {
  config: Config
  logger: Logger
  metrics: Metrics
  db: Db
  dbRead: Db
  redis: Redis
  /** Prompts the outbox relay after a commit (best effort; the relay's sweeper is the guarantee). */
  outbox: OutboxNotifier
  /** The process is shutting down: readiness reports 503 so the load balancer stops sending traffic. */
  lifecycle: { draining: boolean }
  ping: { mysql(): Promise<void>; redis(): Promise<void> }
}
