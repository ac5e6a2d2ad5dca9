import { Server as HttpServer } from 'node:http'
import { type AddressInfo, Server as NetServer } from 'node:net'
import { type Http2Bindings, type HttpBindings, serve } from '@hono/node-server'
import type { Hono } from 'hono'
import type { AppEnv } from '../http/context'
import type { Logger } from '../logger'
import { StartupError } from './deps'

export const SHUTDOWN_DEADLINE_MS = 10_000

/**
 * How long nginx keeps an idle keep-alive connection to a function (`keepalive_timeout` of the upstreams
 * scripts/gen-infra.ts writes). Below KEEP_ALIVE_TIMEOUT_MS, so that nginx, not the function, ends an
 * idle connection: the function closing one while nginx sends a request on it would fail that request,
 * and nginx does not send a POST again.
 */
export const UPSTREAM_KEEPALIVE_TIMEOUT_MS = 4_000
/** How long the function keeps an idle keep-alive connection open (Node's default, set on purpose). */
export const KEEP_ALIVE_TIMEOUT_MS = 5_000
/**
 * After close: a connection idle since before it is closed by nginx within UPSTREAM_KEEPALIVE_TIMEOUT_MS,
 * and one used since gets `Connection: close` on its response; whatever is left after this is closed.
 */
export const DRAIN_IDLE_CLOSE_MS = UPSTREAM_KEEPALIVE_TIMEOUT_MS + 500

export type RunningServer = { port: number; close(): Promise<void> }

/**
 * Listens on `port` (0: any free port); a port in use is a StartupError that names it.
 *
 * `close()` drains without failing a request a proxy sends: it stops accepting connections at once (a
 * proxy then sends new requests to another instance, which is always safe since none reached this one),
 * answers every further request on a kept-alive connection with `Connection: close`, and closes
 * connections that stayed idle only once the proxy has stopped using them (DRAIN_IDLE_CLOSE_MS). It
 * resolves when the last connection is closed: in-flight requests have been answered by then.
 */
export function listen(app: Hono<AppEnv>, port: number, hostname = '0.0.0.0'): Promise<RunningServer> {
  return new Promise((resolve, reject) => {
    let draining = false
    // Before the adapter writes the response: a draining server asks the client to close the connection,
    // on responses to requests that arrive from now on and on those in flight. A check on the way out of
    // each request rather than a listener on each response (a listener per request cost 1 % of a cached
    // read's CPU in a profile).
    const closeIfDraining = (env: HttpBindings | Http2Bindings, response: Response) => {
      if (draining && !env.outgoing.headersSent) env.outgoing.setHeader('Connection', 'close')
      return response
    }
    const fetch = (request: Request, env: HttpBindings | Http2Bindings) => {
      const answer = app.fetch(request, env)
      return answer instanceof Promise
        ? answer.then((response) => closeIfDraining(env, response))
        : closeIfDraining(env, answer)
    }
    const server = serve({ fetch, port, hostname }, (info: AddressInfo) => {
      resolve({
        port: info.port,
        close: () =>
          new Promise<void>((done) => {
            draining = true
            const idle = setTimeout(() => http.closeIdleConnections(), DRAIN_IDLE_CLOSE_MS)
            // http.Server#close would also end every idle kept-alive connection at once (Node 19 and
            // later), racing a proxy that is sending a request on one: net.Server's close only stops
            // accepting, and calls back once every connection has ended.
            NetServer.prototype.close.call(http, () => {
              clearTimeout(idle)
              done()
            })
          }),
      })
    })
    if (!(server instanceof HttpServer)) throw new Error('listen: expected an HTTP/1.1 server')
    const http = server
    http.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS
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
