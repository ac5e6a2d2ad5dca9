import { createHash } from 'node:crypto'
import { Redis as IORedis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type OwnRedis, startOwnRedis } from '../testing/own-redis'
import { connectRedis, createRedis, type Redis } from './client'
import { REDIS_SCRIPTS } from './scripts'

const PREFIX = 'app:'

/** A redis-server of this file's own: it is flushed of its scripts and restarted below. */
let own: OwnRedis
let redis: Redis
/** The same server without the prefix, to see the keys as they are stored. */
let raw: IORedis

beforeAll(async () => {
  own = await startOwnRedis()
  redis = createRedis(own.url, PREFIX)
  await connectRedis(redis)
  raw = new IORedis(own.url, { lazyConnect: true })
  raw.on('error', () => undefined)
  await raw.connect()
})
afterAll(async () => {
  redis?.disconnect()
  raw?.disconnect()
  await own?.stop()
})

describe('the Redis scripts', () => {
  it('declare as many keys as their Lua uses, and every one is a method of the client', () => {
    for (const [name, { numberOfKeys, lua }] of Object.entries(REDIS_SCRIPTS)) {
      const used = [...lua.matchAll(/KEYS\[(\d+)\]/g)].map((m) => Number(m[1]))
      expect(Math.max(...used), name).toBe(numberOfKeys)
      expect(typeof (redis as unknown as Record<string, unknown>)[name], name).toBe('function')
    }
  })

  it("run on the client's prefixed keys, as every other command does", async () => {
    await raw.set(`${PREFIX}lock`, 'mine')
    await raw.set('lock', 'mine')
    expect(await redis.deleteIfEquals('lock', 'theirs')).toBe(0)
    expect(await raw.get(`${PREFIX}lock`)).toBe('mine')
    expect(await redis.deleteIfEquals('lock', 'mine')).toBe(1)
    expect(await raw.exists(`${PREFIX}lock`)).toBe(0)
    // The unprefixed key of the same name is someone else's.
    expect(await raw.get('lock')).toBe('mine')
  })

  it('keep their place among the commands auto-pipelined in the same turn', async () => {
    const [set, deleted, after] = await Promise.all([
      redis.set('ordered', 'v'),
      redis.deleteIfEquals('ordered', 'v'),
      redis.get('ordered'),
    ])
    expect([set, deleted, after]).toEqual(['OK', 1, null])
  })

  it('work again after Redis lost its script cache (SCRIPT FLUSH, a restart)', async () => {
    const sha = createHash('sha1').update(REDIS_SCRIPTS.takeTokens.lua).digest('hex')
    expect(await redis.takeTokens('bucket', 1, 5, 1)).toEqual([1, 0])
    await raw.script('FLUSH')
    expect(await raw.script('EXISTS', sha)).toEqual([0])
    // The client still takes the script as loaded on this connection: its EVALSHA meets NOSCRIPT.
    expect(await redis.takeTokens('bucket', 1, 5, 1)).toEqual([1, 0])
    expect(await raw.script('EXISTS', sha)).toEqual([1])

    // Not events.once: it would reject on the connection errors the client reports while Redis is away.
    const lost = new Promise((resolve) => redis.once('reconnecting', resolve))
    const ready = new Promise((resolve) => redis.once('ready', resolve))
    await own.stop()
    // The client has seen the old server go: what follows runs on a new connection to a new server.
    await lost
    await own.start()
    await ready
    expect(await redis.setIfGeneration('value', 'value:gen', '', '"v"', 60_000)).toBe(1)
    expect(await redis.get('value')).toBe('"v"')
  })
})
