import type { AddressInfo } from 'node:net'
import { serve } from '@hono/node-server'
import type { Hono } from 'hono'
import type { AppEnv } from '../http/context'
import type { Logger } from '../logger'
import { StartupError } from './deps'

export const SHUTDOWN_DEADLINE_MS = 10_000

export type RunningServer = { port: number; close(): Promise<void> }

/** Listens on `port` (0: any free port); a port in use is a StartupError that names it. */
export function listen(app: Hono<AppEnv>, port: number, hostname = '0.0.0.0'): Promise<RunningServer> {
  return new Promise((resolve, reject) => {
    const server = serve({ fetch: app.fetch, port, hostname }, (info: AddressInfo) => {
      resolve({
        port: info.port,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done())
            if ('closeIdleConnections' in server) server.closeIdleConnections()
          }),
      })
    })
    server.once('error', (error: NodeJS.ErrnoException) => {
      reject(
        error.code === 'EADDRINUSE'
          ? new StartupError(
              `Port ${port} is already in use. Stop what runs there or set PORT to another port.`,
            )
          : error,
      )
    })
  })
}

/**
 * SIGTERM/SIGINT: report not-ready, stop accepting connections, let in-flight requests finish, run the
 * given closers (workers, pools) and exit 0; exit 1 if that takes longer than 10 s.
 */
export function onShutdown(options: {
  logger: Logger
  lifecycle: { draining: boolean }
  steps: Array<() => Promise<void>>
}) {
  let stopping = false
  const stop = async (signal: string) => {
    if (stopping) return
    stopping = true
    options.lifecycle.draining = true
    options.logger.info('shutting down', { signal })
    const deadline = setTimeout(() => {
      options.logger.error('shutdown deadline passed; exiting', { deadlineMs: SHUTDOWN_DEADLINE_MS })
      process.exit(1)
    }, SHUTDOWN_DEADLINE_MS)
    deadline.unref()
    for (const step of options.steps) {
      try {
        await step()
      } catch (error) {
        options.logger.error('shutdown step failed', { error })
      }
    }
    options.logger.info('stopped')
    process.exit(0)
  }
  process.once('SIGTERM', () => void stop('SIGTERM'))
  process.once('SIGINT', () => void stop('SIGINT'))
}
