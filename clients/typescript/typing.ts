import type { Client } from 'openapi-fetch'
import type { paths } from './api'

/**
 * Compile-time only: what the generated types must refuse (the client test type-checks this file and
 * never runs it). Ids and limits are integers, not strings of digits; problem codes are a closed set.
 */
export async function refusedByTheTypes(client: Client<paths>) {
  // @ts-expect-error a path id is an integer
  await client.GET('/v1/products/{productId}', { params: { path: { productId: '7' } } })
  // @ts-expect-error limit is an integer
  await client.GET('/v1/users/{userId}/orders', { params: { path: { userId: 7 }, query: { limit: '5' } } })
  const { error } = await client.GET('/v1/orders/{orderId}', { params: { path: { orderId: 7 } } })
  // @ts-expect-error no route answers with a code outside the documented ones
  return error?.code === 'NO_SUCH_CODE'
}
