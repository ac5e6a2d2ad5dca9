import createClient from 'openapi-fetch'
import type { paths } from './api'

/**
 * The README's flow through a client generated from the service's /openapi.json: list products,
 * charge a balance, order with an Idempotency-Key, replay that order, cancel it, and read a refusal
 * through the typed error. Prints what it saw as one JSON line (the client test asserts on it).
 *
 *   npm run generate -w clients/typescript
 *   COMMERCE_URL=http://localhost:8080 COMMERCE_TOKEN=$(npm run -s token -- --sub 1) \
 *     COMMERCE_USER_ID=1 COMMERCE_PRODUCT_ID=1 npx tsx clients/typescript/flow.ts
 */

const setting = (name: string): string => {
  const value = process.env[name]
  if (!value) throw new Error(`${name} is required`)
  return value
}

const client = createClient<paths>({
  baseUrl: setting('COMMERCE_URL'),
  headers: { Authorization: `Bearer ${setting('COMMERCE_TOKEN')}` },
})
const userId = Number(setting('COMMERCE_USER_ID'))
const productId = Number(setting('COMMERCE_PRODUCT_ID'))

/** A step that should have succeeded: its problem JSON, typed, says why it did not. */
function expectData<T>(step: string, result: { data?: T; error?: { code: string; detail: string } }): T {
  if (result.data === undefined) throw new Error(`${step}: ${result.error?.code} ${result.error?.detail}`)
  return result.data
}

const list = await client.GET('/v1/products', { params: { query: { limit: 5 } } })
const page = expectData('list products', list)

const product = expectData(
  'get the product',
  await client.GET('/v1/products/{productId}', { params: { path: { productId } } }),
)

const charge = await client.POST('/v1/users/{userId}/balance/charge', {
  params: { path: { userId } },
  body: { amount: 100_000 },
})
const charged = expectData('charge', charge)

const order = { items: [{ productId, quantity: 2 }] }
const key = `flow-${crypto.randomUUID()}`
const first = await client.POST('/v1/orders', { params: { header: { 'Idempotency-Key': key } }, body: order })
const placed = expectData('order', first)
const again = await client.POST('/v1/orders', { params: { header: { 'Idempotency-Key': key } }, body: order })
const replayed = expectData('replay the order', again)

const cancel = await client.POST('/v1/orders/{orderId}/cancel', { params: { path: { orderId: placed.id } } })
const cancelled = expectData('cancel', cancel)

const balance = expectData(
  'read the balance',
  await client.GET('/v1/users/{userId}/balance', { params: { path: { userId } } }),
)

const refused = await client.POST('/v1/orders', { body: { items: [{ productId, quantity: 0 }] } })
if (refused.error === undefined) throw new Error('an order of 0 items was accepted')
const problem = refused.error

process.stdout.write(
  `${JSON.stringify({
    listed: { status: list.response.status, count: page.items.length },
    product: { id: product.id, price: product.price, stock: product.stock },
    charged: { status: charge.response.status, balance: charged.balance },
    placed: { status: first.response.status, id: placed.id, state: placed.status, total: placed.total },
    replayed: {
      status: again.response.status,
      header: again.response.headers.get('Idempotent-Replayed'),
      id: replayed.id,
    },
    cancelled: { status: cancel.response.status, state: cancelled.status },
    balanceAfterCancel: balance.balance,
    problem: { status: refused.response.status, code: problem.code, errors: problem.errors },
  })}\n`,
)
