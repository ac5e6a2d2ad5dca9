import type { InvalidationBus } from './cache/invalidation-bus'
import type { Config } from './config'
import type { Db } from './db/client'
import type { OutboxNotifier } from './events/outbox'
import type { Logger } from './logger'
import type { Metrics } from './metrics'
import type { Redis } from './redis/client'

/**
 * Everything a function or worker may use, built once per process by the entry point and passed in.
 * A function declares the part it needs (`Pick<Deps, 'db' | 'redis'>`) and its tests build exactly that.
 * What costs a connection is made on first use: a process holds only what its function uses.
 */
export type Deps = {
  config: Config
  logger: Logger
  metrics: Metrics
  db: Db
  dbRead: Db
  redis: Redis
  /** Cross-process invalidation of in-memory caches (its subscriber connects on first subscribe). */
  bus: InvalidationBus
  /** Wakes the outbox relay after a commit (best effort; the relay's sweeper is the guarantee). */
  outbox: OutboxNotifier
  /** The process is shutting down: readiness reports 503 so the load balancer stops sending traffic. */
  lifecycle: { draining: boolean }
  ping: { mysql(): Promise<void>; redis(): Promise<void> }
  /**
   * A component shared by every function of this process (a cache, a view with a timer), built on first
   * use and closed with the process's dependencies.
   */
  once<T>(name: string, build: () => T, close?: (value: T) => unknown): T
}
