import cluster from 'node:cluster'
import { serve } from '@hono/node-server'
import { Hono } from 'hono'

/**
 * The read ceiling, in the service's process layout: a primary that forks BENCH_CEILING_WORKERS workers
 * (node:cluster, sharing PORT as `npm start`'s HTTP workers do), each a bare Hono app on
 * @hono/node-server answering GET /v1/products/:id with a constant product JSON of the same size as the
 * service's (BENCH_CEILING_BODY). No middleware, no Redis, no MySQL: what the runtime and the proxy cost
 * on their own.
 */
const port = Number(process.env.PORT ?? 0)

if (cluster.isPrimary) {
  const workers = Number(process.env.BENCH_CEILING_WORKERS ?? 1)
  let ready = 0
  for (let i = 0; i < workers; i++) {
    cluster.fork().on('message', () => {
      ready++
      if (ready === workers) process.stdout.write(`ceiling app: ${workers} workers on ${port}\n`)
    })
  }
  const stop = () => {
    for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGTERM')
    process.exit(0)
  }
  process.once('SIGTERM', stop)
  process.once('SIGINT', stop)
} else {
  const body: unknown = JSON.parse(process.env.BENCH_CEILING_BODY ?? '{}')
  const app = new Hono()
  app.get('/health/ready', (c) => c.json({ status: 'ready' }))
  app.get('/v1/products/:productId', (c) => c.json(body))
  const server = serve({ fetch: app.fetch, port, hostname: '127.0.0.1' }, () => process.send?.('ready'))
  process.once('SIGTERM', () => server.close(() => process.exit(0)))
}
