import { setTimeout as sleep } from 'node:timers/promises'
import { mintToken } from '../../shared/http/auth'
import {
  type Answer,
  type Client,
  isTransient,
  type KeyedWrite,
  type Request,
  type RequestKind,
} from './client'

/** A small seeded generator (mulberry32), so that a run can be repeated with `--seed`. */
export function randomSource(seed: number) {
  let state = seed >>> 0
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296
  }
  return {
    next,
    int: (min: number, max: number) => min + Math.floor(next() * (max - min + 1)),
    pick: <T>(items: readonly T[]): T => {
      const item = items[Math.floor(next() * items.length)]
      if (item === undefined) throw new Error('pick from an empty list')
      return item
    },
    hex: () => Math.floor(next() * 2 ** 32).toString(16),
  }
}

export type Random = ReturnType<typeof randomSource>

export type LoadProfile = {
  users: number
  clients: number
  hotStock: number
  regularProducts: number
  couponQuantity: number
}

export const PROFILES: Record<'short' | 'full', LoadProfile> = {
  short: { users: 16, clients: 6, hotStock: 40, regularProducts: 3, couponQuantity: 6 },
  full: { users: 40, clients: 12, hotStock: 150, regularProducts: 5, couponQuantity: 15 },
}

type User = {
  id: number
  token: string
  /** Orders this user placed that the suite last saw PAID. */
  paidOrders: number[]
  /** User coupons issued to this user and not yet seen used. */
  coupons: number[]
}

export type World = {
  users: User[]
  hotProductId: number
  regularProductIds: number[]
  couponIds: number[]
  adminToken: string
}

const MAX_RETRIES = 4

/** The answer's body as an object with the given numeric field, or undefined. */
const numberField = (answer: Answer, field: string): number | undefined => {
  if (typeof answer.status !== 'number' || !('body' in answer)) return undefined
  const value = (answer.body as Record<string, unknown> | null)?.[field]
  return typeof value === 'number' ? value : undefined
}

const retryDelayMs = (attempt: number) => Math.min(2_000, 250 * 2 ** attempt)

/**
 * Sends a request and, as a careful client does, retries what left its outcome open (a 5xx, 409
 * IDEMPOTENCY_KEY_IN_USE, no answer) with the same Idempotency-Key, a bounded number of times. A request
 * without a key is never retried: it could do its effect twice.
 */
export async function sendWithRetries(client: Client, request: Request, stopped: () => boolean) {
  let answer = await client.send(request)
  for (let attempt = 0; request.key !== undefined && attempt < MAX_RETRIES; attempt++) {
    if (!isTransient(answer) || stopped()) break
    await sleep(retryDelayMs(attempt))
    answer = await client.send(request)
  }
  return answer
}

/** Products, coupons and funded users, made through the API as an operator and users would. */
export async function createWorld(
  client: Client,
  jwtSecret: string,
  profile: LoadProfile,
  random: Random,
): Promise<World> {
  const adminToken = await mintToken(jwtSecret, { sub: 1, role: 'admin', ttlSeconds: 3_600 })
  const must = async (request: Omit<Request, 'kind' | 'token' | 'userId'>, field: string) => {
    const answer = await client.send({ ...request, kind: 'setup', userId: 1, token: adminToken })
    const value = numberField(answer, field)
    if (value === undefined) {
      throw new Error(`setup ${request.method} ${request.path} failed: ${JSON.stringify(answer)}`)
    }
    return value
  }
  const product = (name: string, price: number, stock: number) =>
    must({ method: 'POST', path: '/v1/admin/products', body: { name, price, stock } }, 'id')
  const hotProductId = await product('chaos: the flash-sale item', 1_000, profile.hotStock)
  const regularProductIds: number[] = []
  for (let i = 0; i < profile.regularProducts; i++) {
    regularProductIds.push(await product(`chaos: item ${i}`, 500 * (i + 1), 1_000_000))
  }
  const couponIds = [
    await must(
      {
        method: 'POST',
        path: '/v1/admin/coupons',
        body: {
          name: 'chaos: 700 off',
          type: 'FIXED',
          value: 700,
          totalQuantity: profile.couponQuantity,
          validDays: 7,
        },
      },
      'id',
    ),
    await must(
      {
        method: 'POST',
        path: '/v1/admin/coupons',
        body: {
          name: 'chaos: 10 %',
          type: 'PERCENT',
          value: 10,
          totalQuantity: Math.ceil(profile.couponQuantity / 2),
          validDays: 7,
        },
      },
      'id',
    ),
  ]
  // User ids of this run's own, far from the demo data's and from any other run's.
  const base = random.int(2 ** 40, 2 ** 46)
  const users: User[] = []
  for (let i = 0; i < profile.users; i++) {
    const id = base + i
    const token = await mintToken(jwtSecret, { sub: id, role: 'user', ttlSeconds: 3_600 })
    users.push({ id, token, paidOrders: [], coupons: [] })
  }
  // Half start poor, so that balances run out during the run and replays meet a spent balance.
  await Promise.all(
    users.map(async (user, i) => {
      const answer = await client.send({
        kind: 'setup',
        method: 'POST',
        path: `/v1/users/${user.id}/balance/charge`,
        userId: user.id,
        token: user.token,
        key: `setup-${user.id}`,
        body: { amount: i % 2 === 0 ? 15_000 : 400_000 },
      })
      if (numberField(answer, 'balance') === undefined) {
        throw new Error(`setup charge for user ${user.id} failed: ${JSON.stringify(answer)}`)
      }
    }),
  )
  return { users, hotProductId, regularProductIds, couponIds, adminToken }
}

/**
 * One virtual client: picks a user and an action at random, sends it (with an Idempotency-Key most of
 * the time), retries what is transient, and follows what the service answered (orders to cancel later,
 * coupons to spend). Runs until `stopped()`.
 */
export async function runVirtualClient(
  client: Client,
  world: World,
  random: Random,
  stopped: () => boolean,
): Promise<void> {
  const keyFor = (kind: RequestKind) =>
    random.next() < 0.85 ? `${kind}-${random.hex()}-${random.hex()}` : undefined

  while (!stopped()) {
    const user = random.pick(world.users)
    const roll = random.next()
    let request: Request
    if (roll < 0.45) {
      const hot = roll < 0.15
      const items = hot
        ? [{ productId: world.hotProductId, quantity: random.int(1, 2) }]
        : [
            ...new Set(Array.from({ length: random.int(1, 2) }, () => random.pick(world.regularProductIds))),
          ].map((productId) => ({ productId, quantity: random.int(1, 3) }))
      const userCouponId =
        user.coupons.length > 0 && random.next() < 0.5 ? random.pick(user.coupons) : undefined
      const kind = hot ? 'order-hot' : 'order'
      const key = keyFor(kind)
      request = {
        kind,
        method: 'POST',
        path: '/v1/orders',
        userId: user.id,
        token: user.token,
        body: userCouponId === undefined ? { items } : { items, userCouponId },
        ...(key === undefined ? {} : { key }),
      }
      const answer = await sendWithRetries(client, request, stopped)
      const orderId = numberField(answer, 'id')
      if (orderId !== undefined && answer.status === 201) {
        if (!user.paidOrders.includes(orderId)) user.paidOrders.push(orderId)
        if (userCouponId !== undefined) user.coupons = user.coupons.filter((id) => id !== userCouponId)
      }
      continue
    }
    if (roll < 0.57) {
      const key = keyFor('charge')
      request = {
        kind: 'charge',
        method: 'POST',
        path: `/v1/users/${user.id}/balance/charge`,
        userId: user.id,
        token: user.token,
        body: { amount: random.int(1, 50) * 1_000 },
        ...(key === undefined ? {} : { key }),
      }
      await sendWithRetries(client, request, stopped)
      continue
    }
    if (roll < 0.65) {
      const key = keyFor('coupon-issue')
      request = {
        kind: 'coupon-issue',
        method: 'POST',
        path: `/v1/coupons/${random.pick(world.couponIds)}/issue`,
        userId: user.id,
        token: user.token,
        ...(key === undefined ? {} : { key }),
      }
      const answer = await sendWithRetries(client, request, stopped)
      const userCouponId = numberField(answer, 'userCouponId')
      if (userCouponId !== undefined && !user.coupons.includes(userCouponId)) user.coupons.push(userCouponId)
      continue
    }
    if (roll < 0.75 && user.paidOrders.length > 0) {
      const orderId = random.pick(user.paidOrders)
      const key = keyFor('cancel')
      request = {
        kind: 'cancel',
        method: 'POST',
        path: `/v1/orders/${orderId}/cancel`,
        userId: user.id,
        token: user.token,
        ...(key === undefined ? {} : { key }),
      }
      const answer = await sendWithRetries(client, request, stopped)
      if (answer.status === 200 || ('code' in answer && answer.code === 'ORDER_NOT_CANCELLABLE')) {
        user.paidOrders = user.paidOrders.filter((id) => id !== orderId)
      }
      continue
    }
    if (roll < 0.92) {
      // A deliberate replay: a request that already succeeded, sent again later with the same key and body.
      const done = [...client.keyed.values()].filter((write) => write.first !== undefined)
      if (done.length > 0) {
        const write = random.pick(done)
        await sendWithRetries(client, { ...write.request, kind: 'replay' }, stopped)
        continue
      }
    }
    const reads = [
      `/v1/products/${world.hotProductId}`,
      `/v1/users/${user.id}/balance`,
      ...user.paidOrders.slice(-1).map((id) => `/v1/orders/${id}`),
    ]
    await client.send({
      kind: 'read',
      method: 'GET',
      path: random.pick(reads),
      userId: user.id,
      token: user.token,
    })
  }
}

/**
 * After the last heal, while the load goes on: keyed writes are sent once more. A success must come back
 * as it was first answered, whatever changed since (sold out, balance spent, coupons gone, order
 * cancelled). Writes that never got past "try again" go first and are retried until they get a real
 * answer, so that what they did is known; then a random sample of the successes, up to `max` in all.
 */
export async function finalReplays(
  client: Client,
  random: Random,
  options: { concurrency: number; deadline: number; max: number },
): Promise<number> {
  const writes = [...client.keyed.values()]
  const unresolved = writes.filter((write) => write.first === undefined && write.lastTransient)
  const succeeded = writes.filter((write) => write.first !== undefined)
  for (let i = succeeded.length - 1; i > 0; i--) {
    const j = Math.floor(random.next() * (i + 1))
    const swap = succeeded[i] as KeyedWrite
    succeeded[i] = succeeded[j] as KeyedWrite
    succeeded[j] = swap
  }
  const queue = [...unresolved, ...succeeded].slice(0, Math.max(options.max, unresolved.length))
  let sent = 0
  const worker = async () => {
    for (let write = queue.shift(); write !== undefined; write = queue.shift()) {
      for (let attempt = 0; Date.now() < options.deadline; attempt++) {
        const answer = await client.send({ ...write.request, kind: 'final-replay' })
        sent++
        if (!isTransient(answer)) break
        await sleep(retryDelayMs(attempt))
      }
    }
  }
  await Promise.all(Array.from({ length: options.concurrency }, worker))
  return sent
}
