import { once } from 'node:events'
import { Agent, request } from 'node:http'
import { connect, type Socket } from 'node:net'
import { Hono } from 'hono'
import { afterEach, describe, expect, it } from 'vitest'
import type { AppEnv } from '../http/context'
import { listen, type RunningServer } from './server'

/**
 * The drain of `close()` as a keep-alive proxy (nginx) sees it: no new connection is accepted, a request
 * on a kept-alive connection is still answered (with `Connection: close`), a request in flight finishes,
 * and an idle connection is not closed under the proxy at once.
 */

type Answer = { status: number; body: string; connection: string | undefined; reused: boolean }

function get(port: number, path: string, agent: Agent): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => {
        body += chunk
      })
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          body,
          connection: res.headers.connection,
          reused: req.reusedSocket,
        }),
      )
    })
    req.on('error', reject)
    req.end()
  })
}

/** A TCP connection attempt: 'refused' once the server no longer listens. */
function tryConnect(port: number): Promise<'accepted' | 'refused'> {
  return new Promise((resolve) => {
    const socket: Socket = connect(port, '127.0.0.1')
    socket.once('connect', () => {
      socket.destroy()
      resolve('accepted')
    })
    socket.once('error', () => resolve('refused'))
  })
}

let running: RunningServer | undefined
let agent: Agent | undefined
let release: () => void = () => undefined

function startApp() {
  const gate = new Promise<void>((resolve) => {
    release = resolve
  })
  let entered: () => void = () => undefined
  const slowEntered = new Promise<void>((resolve) => {
    entered = resolve
  })
  const app = new Hono<AppEnv>()
  app.get('/fast', (c) => c.text('fast'))
  app.get('/slow', async (c) => {
    entered()
    await gate
    return c.text('slow')
  })
  return { app, slowEntered }
}

afterEach(async () => {
  release()
  agent?.destroy()
  await running?.close()
  running = undefined
})

describe('listen().close()', () => {
  it('stops accepting, answers the next request on a kept-alive connection with Connection: close, then resolves', async () => {
    const { app } = startApp()
    const server = await listen(app, 0, '127.0.0.1')
    running = server
    agent = new Agent({ keepAlive: true, maxSockets: 1 })
    const first = await get(server.port, '/fast', agent)
    expect(first).toMatchObject({ status: 200, reused: false })
    expect(first.connection).not.toBe('close')

    const closed = server.close()
    expect(await tryConnect(server.port)).toBe('refused')
    // The idle kept-alive connection is still open: the request on it is answered, and told to close.
    const second = await get(server.port, '/fast', agent)
    expect(second).toEqual({ status: 200, body: 'fast', connection: 'close', reused: true })
    // That was the last connection: close() resolves without waiting out the idle time.
    await closed
    running = undefined
  })

  it('lets a request in flight finish, with Connection: close', async () => {
    const { app, slowEntered } = startApp()
    const server = await listen(app, 0, '127.0.0.1')
    running = server
    agent = new Agent({ keepAlive: true, maxSockets: 1 })
    const slow = get(server.port, '/slow', agent)
    await slowEntered
    const closed = server.close()
    expect(await tryConnect(server.port)).toBe('refused')
    release()
    expect(await slow).toEqual({ status: 200, body: 'slow', connection: 'close', reused: false })
    await closed
    running = undefined
  })

  it('ends a connection that stays idle itself, after the proxy would have, and then resolves', async () => {
    const { app } = startApp()
    const server = await listen(app, 0, '127.0.0.1')
    running = server
    const socket = connect(server.port, '127.0.0.1')
    await once(socket, 'connect')
    socket.write('GET /fast HTTP/1.1\r\nHost: test\r\n\r\n')
    await once(socket, 'data')
    socket.resume()
    const ended = once(socket, 'close')
    // Never used again: close() must not wait for the client to end it.
    await server.close()
    running = undefined
    await ended
  })
})
