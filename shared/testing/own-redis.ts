import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { createServer } from 'node:net'
import { Redis } from 'ioredis'
import { redisAnswers } from '../redis/client'

/**
 * For tests only: a redis-server of the test's own, on a free port, without persistence, that the test
 * may flush, stop and start again. The shared Redis on 6379 is never flushed or stopped.
 */
export type OwnRedis = {
  port: number
  url: string
  start(): Promise<void>
  stop(): Promise<void>
  /** Freezes the server (SIGSTOP): connections stay open and commands go unanswered until resume(). */
  pause(): void
  resume(): void
  flushAll(): Promise<void>
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** A port nothing listens on right now, from the kernel (never a guess that may be taken). */
export async function freePort(): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const address = server.address()
  const port = typeof address === 'object' && address ? address.port : 0
  await new Promise((resolve) => server.close(resolve))
  return port
}

export async function startOwnRedis(): Promise<OwnRedis> {
  const port = await freePort()
  let child: ChildProcess | undefined
  let admin: Redis | undefined

  const own: OwnRedis = {
    port,
    url: `redis://127.0.0.1:${port}`,
    async start() {
      if (child) return
      const started = spawn(
        'redis-server',
        ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
        { stdio: 'ignore' },
      )
      child = started
      started.once('exit', () => {
        if (child === started) child = undefined
      })
      for (let waited = 0; waited < 10_000; waited += 50) {
        if (await redisAnswers(port)) return
        await sleep(50)
      }
      throw new Error(`redis-server on port ${port} did not start`)
    },
    async stop() {
      admin?.disconnect()
      admin = undefined
      const running = child
      if (!running) return
      const exited = once(running, 'exit')
      running.kill('SIGKILL')
      await exited
      child = undefined
    },
    pause() {
      child?.kill('SIGSTOP')
    },
    resume() {
      child?.kill('SIGCONT')
    },
    async flushAll() {
      admin ??= new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 1 })
      admin.on('error', () => undefined)
      await admin.flushall()
    },
  }
  await own.start()
  return own
}
