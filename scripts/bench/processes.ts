import { type ChildProcess, spawn } from 'node:child_process'
import { createServer } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'

/** The last lines a child printed, shown only when it fails. */
const TAIL_LINES = 40
const STOP_GRACE_MS = 5_000

export type Child = {
  name: string
  process: ChildProcess
  /** What it printed lately (stdout and stderr), for error messages. */
  tail(): string
  stop(): Promise<void>
}

const children = new Set<Child>()

const exited = (child: ChildProcess) => child.exitCode !== null || child.signalCode !== null

/**
 * Starts a long-running child (a server) whose output is kept, not shown: the bench prints its own
 * progress, and a child's output is printed only if it dies or never gets ready.
 */
export function startChild(
  name: string,
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv = process.env,
  /** Runs once the child has exited after stop(): removing what it left behind. */
  afterStop?: () => void,
): Child {
  const proc = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] })
  const lines: string[] = []
  const keep = (chunk: Buffer) => {
    lines.push(...chunk.toString('utf8').split('\n').filter(Boolean))
    if (lines.length > TAIL_LINES) lines.splice(0, lines.length - TAIL_LINES)
  }
  proc.stdout?.on('data', keep)
  proc.stderr?.on('data', keep)
  proc.on('error', (error) => lines.push(`spawn failed: ${error.message}`))
  const child: Child = {
    name,
    process: proc,
    tail: () => lines.join('\n'),
    async stop() {
      children.delete(child)
      if (!exited(proc)) {
        const gone = new Promise<void>((resolve) => proc.once('exit', () => resolve()))
        proc.kill('SIGTERM')
        const inTime = await Promise.race([gone.then(() => true), sleep(STOP_GRACE_MS).then(() => false)])
        if (!inTime && !exited(proc)) {
          proc.kill('SIGKILL')
          await gone
        }
      }
      afterStop?.()
    },
  }
  children.add(child)
  return child
}

/** Stops every child still running (servers first to last, in parallel). */
export async function stopAll(): Promise<void> {
  await Promise.allSettled([...children].map((child) => child.stop()))
}

/**
 * Children are ended on normal exit, on an error and on Ctrl-C/SIGTERM. `exit` handlers cannot wait,
 * so the last resort is a synchronous SIGKILL to whatever is still alive.
 */
export function installCleanup(onSignal: () => Promise<void>): void {
  process.on('exit', () => {
    for (const child of children) if (!exited(child.process)) child.process.kill('SIGKILL')
  })
  let interrupted = false
  const interrupt = (signal: NodeJS.Signals) => {
    if (interrupted) return
    interrupted = true
    process.stderr.write(`\n${signal}: stopping the bench's servers…\n`)
    void onSignal().finally(() => process.exit(130))
  }
  process.once('SIGINT', interrupt)
  process.once('SIGTERM', interrupt)
}

/** A port the kernel just had free on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      const port = typeof address === 'object' && address ? address.port : 0
      server.close(() => resolve(port))
    })
  })
}

/** Polls `url` until it answers 200, within `timeoutMs`; a child that dies meanwhile fails at once. */
export async function waitForOk(url: string, child: Child, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  let last = 'no answer'
  while (Date.now() < deadline) {
    if (exited(child.process)) {
      throw new Error(
        `${child.name} exited (${child.process.exitCode ?? child.process.signalCode}):\n${child.tail()}`,
      )
    }
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(1_000) })
      await response.arrayBuffer()
      if (response.status === 200) return
      last = `HTTP ${response.status}`
    } catch (error) {
      last = error instanceof Error ? error.message : String(error)
    }
    await sleep(100)
  }
  throw new Error(`${child.name} not ready at ${url} after ${timeoutMs} ms (${last}):\n${child.tail()}`)
}

/** `node --import tsx file`: one process (the tsx CLI would add a wrapper process between us and it). */
export function startTsx(name: string, file: string, env: NodeJS.ProcessEnv): Child {
  return startChild(name, process.execPath, ['--import', import.meta.resolve('tsx'), file], env)
}
