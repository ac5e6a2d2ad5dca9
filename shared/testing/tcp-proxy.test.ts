import { once } from 'node:events'
import net from 'node:net'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { testConfig } from './harness'
import { createTcpProxy, type TcpProxy } from './tcp-proxy'

/** An echo server: what the proxy must carry unchanged, in order, both ways. */
let echo: net.Server
let echoPort: number

beforeAll(async () => {
  echo = net.createServer((socket) => {
    socket.on('error', () => undefined)
    socket.pipe(socket)
  })
  echo.listen(0, '127.0.0.1')
  await once(echo, 'listening')
  echoPort = (echo.address() as net.AddressInfo).port
})
afterAll(async () => {
  await new Promise((resolve) => echo.close(resolve))
})

const connect = async (port: number) => {
  const socket = net.connect(port, '127.0.0.1')
  socket.on('error', () => undefined)
  await once(socket, 'connect')
  return socket
}

/** Sends `count` numbered lines and resolves with what came back once all of it has. */
async function roundTrip(socket: net.Socket, count: number): Promise<string> {
  const sent = Array.from({ length: count }, (_, i) => `line ${i}\n`).join('')
  let received = ''
  const done = new Promise<void>((resolve) => {
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString('utf8')
      if (received.length >= sent.length) resolve()
    })
  })
  for (let i = 0; i < count; i++) socket.write(`line ${i}\n`)
  await done
  return received
}

const closedWith = (socket: net.Socket) =>
  new Promise<string>((resolve) => {
    let code = 'closed'
    socket.once('error', (error: NodeJS.ErrnoException) => {
      code = error.code ?? error.message
    })
    socket.once('close', () => resolve(code))
  })

/** A Redis client through the proxy that gives up on a command after `timeoutMs` and never queues. */
const redisThrough = (proxy: TcpProxy, timeoutMs: number) => {
  const client = new Redis({
    host: '127.0.0.1',
    port: proxy.port,
    ...(timeoutMs > 0 ? { commandTimeout: timeoutMs } : {}),
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    lazyConnect: true,
    retryStrategy: () => 50,
  })
  client.on('error', () => undefined)
  return client
}

describe('the TCP proxy', () => {
  it('relays both ways unchanged and in order, also while delaying', async () => {
    const proxy = await createTcpProxy(echoPort)
    try {
      const plain = await connect(proxy.port)
      const expected = Array.from({ length: 200 }, (_, i) => `line ${i}\n`).join('')
      expect(await roundTrip(plain, 200)).toBe(expected)
      await proxy.delay(20)
      expect(proxy.state).toBe('delayed')
      expect(await roundTrip(await connect(proxy.port), 200)).toBe(expected)
      plain.destroy()
    } finally {
      await proxy.close()
    }
  })

  it('cut with reset resets open connections and every new one until restored', async () => {
    const proxy = await createTcpProxy(echoPort)
    try {
      const open = await connect(proxy.port)
      await roundTrip(open, 1)
      const closed = closedWith(open)
      await proxy.cut({ reset: true })
      expect(await closed).toBe('ECONNRESET')

      const refused = net.connect(proxy.port, '127.0.0.1')
      expect(await closedWith(refused)).toBe('ECONNRESET')

      await proxy.restore()
      expect(await roundTrip(await connect(proxy.port), 3)).toBe('line 0\nline 1\nline 2\n')
    } finally {
      await proxy.close()
    }
  })

  it('cutWhen cuts only the connection whose packet matches, before it arrives; plain cut closes the rest', async () => {
    let received = ''
    const server = net.createServer((socket) => {
      socket.on('error', () => undefined)
      socket.on('data', (chunk: Buffer) => {
        received += chunk.toString('utf8')
        socket.write(chunk)
      })
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    const proxy = await createTcpProxy((server.address() as net.AddressInfo).port)
    try {
      const doomed = await connect(proxy.port)
      const spared = await connect(proxy.port)
      const cut = proxy.cutWhen((chunk) => chunk.includes('COMMIT'))
      const doomedClosed = closedWith(doomed)
      doomed.write('COMMIT\n')
      await cut
      expect(await doomedClosed).toBe('closed')
      expect(await roundTrip(spared, 2)).toBe('line 0\nline 1\n')
      expect(received).not.toContain('COMMIT')

      const sparedClosed = closedWith(spared)
      await proxy.cut()
      expect(await sparedClosed).toBe('closed')
    } finally {
      await proxy.close()
      await new Promise((resolve) => server.close(resolve))
    }
  })

  it('delay makes a client with a shorter timeout give up; restore serves it again', async () => {
    const proxy = await createTcpProxy(Number(new URL(testConfig().redisUrl).port || 6379))
    const redis = redisThrough(proxy, 200)
    try {
      await redis.connect()
      expect(await redis.ping()).toBe('PONG')
      await proxy.delay(1_000)
      await expect(redis.ping()).rejects.toThrow(/timed out/i)
      await proxy.restore()
      // The late PONG of the timed-out command may still be in flight: a fresh connection settles it.
      redis.disconnect(true)
      await once(redis, 'ready')
      expect(await redis.ping()).toBe('PONG')
    } finally {
      redis.disconnect()
      await proxy.close()
    }
  })

  it('blackhole holds what was sent without losing it, and lets it through once restored', async () => {
    const proxy = await createTcpProxy(Number(new URL(testConfig().redisUrl).port || 6379))
    const impatient = redisThrough(proxy, 200)
    const patient = redisThrough(proxy, 0)
    try {
      await Promise.all([impatient.connect(), patient.connect()])
      await proxy.blackhole()
      expect(proxy.state).toBe('blackholed')
      await expect(impatient.ping()).rejects.toThrow(/timed out/i)
      const held = patient.echo('held, not lost')
      // A connection opened during the blackhole is accepted and waits too.
      const late = redisThrough(proxy, 0)
      const lateReady = late.connect()
      await proxy.restore()
      expect(await held).toBe('held, not lost')
      await lateReady
      expect(await late.ping()).toBe('PONG')
      late.disconnect()
    } finally {
      impatient.disconnect()
      patient.disconnect()
      await proxy.close()
    }
  })
})
