import { serve } from '@hono/node-server'
import { Hono } from 'hono'

/**
 * The read ceiling: a bare Hono app on @hono/node-server answering GET /v1/products/:id with a constant
 * product JSON of the same size as the service's (BENCH_CEILING_BODY). No middleware, no Redis, no
 * MySQL: what the runtime and the proxy cost on their own.
 */
const body: unknown = JSON.parse(process.env.BENCH_CEILING_BODY ?? '{}')
const port = Number(process.env.PORT ?? 0)

const app = new Hono()
app.get('/health/ready', (c) => c.json({ status: 'ready' }))
app.get('/v1/products/:productId', (c) => c.json(body))

const server = serve({ fetch: app.fetch, port, hostname: '127.0.0.1' }, (info) => {
  process.stdout.write(`ceiling app on ${info.port}\n`)
})
const stop = () => server.close(() => process.exit(0))
process.once('SIGTERM', stop)
process.once('SIGINT', stop)
