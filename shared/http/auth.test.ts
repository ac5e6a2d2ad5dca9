import { createHmac, randomBytes } from 'node:crypto'
import { eq } from 'drizzle-orm'
import type { Hono } from 'hono'
import { verify } from 'hono/jwt'
import * as v from 'valibot'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import createBalanceChargeApp from '../../functions/balance-charge/handler'
import createBalanceGetApp from '../../functions/balance-get/handler'
import { balances } from '../db/schema'
import type { RuntimeDeps } from '../runtime/deps'
import {
  call,
  createTestApp,
  createTestDeps,
  expectProblemShape,
  testConfig,
  tokenFor,
  uniqueUserId,
} from '../testing/harness'
import { mintToken } from './auth'
import type { AppEnv } from './context'
import { defineRoute, routeApp } from './route'
import { idParams } from './schemas'

const secret = () => randomBytes(32).toString('hex')
const OLD = secret()
const NEW = secret()

/** Mid-rotation (both secrets), after it (the new one only), and a process never told of the new one. */
let rotating: RuntimeDeps
let rotated: RuntimeDeps
let rotatingApp: Hono<AppEnv>
let rotatedApp: Hono<AppEnv>

beforeAll(async () => {
  ;[rotating, rotated] = await Promise.all([
    createTestDeps({ JWT_SECRET: NEW, JWT_SECRET_PREVIOUS: OLD }),
    createTestDeps({ JWT_SECRET: NEW }),
  ])
  rotatingApp = createTestApp(rotating, [createBalanceGetApp, createBalanceChargeApp])
  rotatedApp = createTestApp(rotated, [createBalanceGetApp])
})
afterAll(async () => {
  await Promise.all([rotating?.close(), rotated?.close()])
})

const signed = (key: string, sub: number, ttlSeconds = 600, role: 'user' | 'admin' = 'user') =>
  mintToken(key, { sub, role, ttlSeconds })

const balanceOf = (app: Hono<AppEnv>, userId: number | string, token: string) =>
  call(app, 'GET', `/v1/users/${userId}/balance`, { token })

describe('JWT_SECRET_PREVIOUS (a zero-downtime rotation)', () => {
  it('accepts tokens signed with either secret while both are configured', async () => {
    const userId = uniqueUserId()
    for (const key of [NEW, OLD]) {
      const res = await balanceOf(rotatingApp, userId, await signed(key, userId))
      expect(res.status).toBe(200)
      expect(res.body).toMatchObject({ userId, balance: 0 })
    }
  })

  it('signs new tokens with JWT_SECRET only', async () => {
    const token = await tokenFor(rotating, uniqueUserId())
    await expect(verify(token, NEW, 'HS256')).resolves.toMatchObject({ role: 'user' })
    await expect(verify(token, OLD, 'HS256')).rejects.toThrow()
  })

  it('refuses an old token once the previous secret is gone, even one verified and cached just before', async () => {
    const userId = uniqueUserId()
    const old = await signed(OLD, userId)
    expect((await balanceOf(rotatingApp, userId, old)).status).toBe(200)
    expectProblemShape(await balanceOf(rotatedApp, userId, old), 401, 'UNAUTHENTICATED')
    // And the other way round: what the new-only process verified is no reason to take the old secret.
    const fresh = await signed(NEW, userId)
    expect((await balanceOf(rotatedApp, userId, fresh)).status).toBe(200)
    expect((await balanceOf(rotatingApp, userId, fresh)).status).toBe(200)
  })

  it('still refuses a token of any other secret, and an expired one of the previous secret', async () => {
    const userId = uniqueUserId()
    expectProblemShape(
      await balanceOf(rotatingApp, userId, await signed(secret(), userId)),
      401,
      'UNAUTHENTICATED',
    )
    expectProblemShape(
      await balanceOf(rotatingApp, userId, await signed(OLD, userId, -10)),
      401,
      'UNAUTHENTICATED',
    )
  })

  it("applies the route's access level to a token of the previous secret", async () => {
    const userId = uniqueUserId()
    expectProblemShape(
      await balanceOf(rotatingApp, userId, await signed(OLD, uniqueUserId())),
      403,
      'FORBIDDEN',
    )
    const admin = await signed(OLD, uniqueUserId(), 600, 'admin')
    expect((await balanceOf(rotatingApp, userId, admin)).status).toBe(200)
  })
})

describe('self-or-admin, enforced by the route layer from the declaration', () => {
  const charge = (path: string, body: unknown, token?: string) =>
    call(rotatingApp, 'POST', path, { body, ...(token === undefined ? {} : { token }) })

  const account = async (userId: number) =>
    (await rotating.db.select().from(balances).where(eq(balances.userId, userId)))[0]

  it('answers 401, then 403, then 400, and changes nothing', async () => {
    const userId = uniqueUserId()
    const path = `/v1/users/${userId}/balance/charge`
    const bad = { amount: -1, extra: true }
    expectProblemShape(await charge(path, bad), 401, 'UNAUTHENTICATED')
    expectProblemShape(await charge(path, bad, await tokenFor(rotating, uniqueUserId())), 403, 'FORBIDDEN')
    expectProblemShape(await charge(path, bad, await tokenFor(rotating, userId)), 400, 'VALIDATION_FAILED')
    expectProblemShape(
      await charge(path, bad, await tokenFor(rotating, uniqueUserId(), 'admin')),
      400,
      'VALIDATION_FAILED',
    )
    expect(await account(userId)).toBeUndefined()
  })

  it('never takes a user id that is not valid for the caller: 403 for a user, 400 for an admin', async () => {
    const userId = uniqueUserId()
    const user = await tokenFor(rotating, userId)
    const admin = await tokenFor(rotating, uniqueUserId(), 'admin')
    for (const id of [`0${userId}`, `${userId}.0`, `+${userId}`, 'abc']) {
      expectProblemShape(await balanceOf(rotatingApp, id, user), 403, 'FORBIDDEN')
      expectProblemShape(await balanceOf(rotatingApp, id, admin), 400, 'VALIDATION_FAILED')
    }
  })

  it('lets the user themself and an admin through', async () => {
    const userId = uniqueUserId()
    const path = `/v1/users/${userId}/balance/charge`
    expect((await charge(path, { amount: 700 }, await tokenFor(rotating, userId))).status).toBe(200)
    expect(
      (await charge(path, { amount: 300 }, await tokenFor(rotating, uniqueUserId(), 'admin'))).status,
    ).toBe(200)
    expect(await account(userId)).toMatchObject({ balance: 1_000 })
  })

  it('refuses to build a self-or-admin route whose path names no user', () => {
    const route = defineRoute({
      method: 'GET',
      path: '/v1/things/:thingId',
      summary: 'Misdeclared',
      tag: 'Test',
      access: 'self-or-admin',
      params: idParams('thingId'),
      response: { status: 200, description: 'A thing', schema: v.object({}) },
      errors: [],
    })
    expect(() => routeApp(route, { config: testConfig() }, async () => ({}))).toThrow(/:userId/)
  })
})

/** A token made by hand: any header and claims, signed with HS256 under `key` (or given a signature). */
function handMade(header: object, claims: object, key: string, signature?: string) {
  const part = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url')
  const unsigned = `${part(header)}.${part(claims)}`
  return `${unsigned}.${signature ?? createHmac('sha256', key).update(unsigned).digest('base64url')}`
}

describe('what a token must be', () => {
  const now = () => Math.floor(Date.now() / 1000)
  const HS256 = { alg: 'HS256', typ: 'JWT' }

  it('takes an HS256 token signed with the secret, and refuses it altered in any part', async () => {
    const userId = uniqueUserId()
    const claims = { sub: String(userId), role: 'user', exp: now() + 600 }
    const good = handMade(HS256, claims, NEW)
    expect((await balanceOf(rotatedApp, userId, good)).status).toBe(200)
    const [header, body, signature] = good.split('.')
    const altered = [
      handMade(HS256, { ...claims, role: 'admin' }, NEW, signature),
      `${header}.${body}.${signature?.slice(0, -2)}`,
      handMade(HS256, claims, `${NEW}x`),
    ]
    for (const token of altered)
      expectProblemShape(await balanceOf(rotatedApp, userId, token), 401, 'UNAUTHENTICATED')
  })

  it('refuses another algorithm named in the header, even over a valid HMAC', async () => {
    const userId = uniqueUserId()
    const claims = { sub: String(userId), role: 'user', exp: now() + 600 }
    for (const alg of ['none', 'HS512', 'RS256'])
      expectProblemShape(
        await balanceOf(rotatedApp, userId, handMade({ alg, typ: 'JWT' }, claims, NEW)),
        401,
        'UNAUTHENTICATED',
      )
  })

  it('refuses a token not valid yet (nbf, iat ahead), expired, or without exp', async () => {
    const userId = uniqueUserId()
    const base = { sub: String(userId), role: 'user' }
    for (const claims of [
      { ...base, exp: now() + 600, nbf: now() + 300 },
      { ...base, exp: now() + 600, iat: now() + 300 },
      { ...base, exp: now() - 1 },
      base,
    ])
      expectProblemShape(
        await balanceOf(rotatedApp, userId, handMade(HS256, claims, NEW)),
        401,
        'UNAUTHENTICATED',
      )
  })

  it('refuses parts that are not JSON objects', async () => {
    const userId = uniqueUserId()
    const sign = (header: string, body: string) => {
      const unsigned = `${Buffer.from(header).toString('base64url')}.${Buffer.from(body).toString('base64url')}`
      return `${unsigned}.${createHmac('sha256', NEW).update(unsigned).digest('base64url')}`
    }
    const claims = JSON.stringify({ sub: String(userId), role: 'user', exp: now() + 600 })
    for (const token of [
      sign('not json', claims),
      sign(JSON.stringify(HS256), '[1,2]'),
      sign('"HS256"', claims),
    ])
      expectProblemShape(await balanceOf(rotatedApp, userId, token), 401, 'UNAUTHENTICATED')
  })
})
