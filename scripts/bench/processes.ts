import { type ChildProcess, spawn } from 'node:child_process'
import { closeSync, openSync, readFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { descendants, type Proc, readProc } from './procfs'

/** The last lines a child printed, shown only when it fails. */
const TAIL_LINES = 40
const TAIL_BYTES = 16_384
const STOP_GRACE_MS = 5_000

export type Child = {
  name: string
  process: ChildProcess
  /** What it printed lately (stdout and stderr), for error messages. */
  tail(): string
  /** Resolves once the child has printed a line matching `pattern`; fails if it exits first. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<void>
  stop(): Promise<void>
}

export type ChildOptions = {
  env?: NodeJS.ProcessEnv
  cwd?: string
  /**
   * Where its stdout and stderr go. Without one they are kept in memory (a few lines, for errors); with
   * one the bench reads nothing while the child runs, so the child's output costs the bench nothing.
   */
  logFile?: string
  /** The process that gets SIGTERM on stop (default: the child; `npm start`'s primary sits below tsx). */
  stopTarget?: () => number | undefined
  /** How long the child gets to stop after SIGTERM before everything of it is killed. */
  graceMs?: number
  /** Runs once the child has exited after stop(): removing what it left behind. */
  afterStop?: () => void
}

const children = new Set<Child>()

const exited = (child: ChildProcess) => child.exitCode !== null || child.signalCode !== null

function fileTail(path: string): string {
  try {
    const text = readFileSync(path, 'utf8')
    return text.slice(-TAIL_BYTES).split('\n').slice(-TAIL_LINES).join('\n')
  } catch {
    return ''
  }
}

/** SIGKILL to the processes seen earlier, where each is still the same process (its pid not reused). */
function killSeen(seen: Proc[]) {
  for (const p of seen) {
    if (readProc(p.pid)?.startedAt !== p.startedAt) continue
    try {
      process.kill(p.pid, 'SIGKILL')
    } catch {
      // gone meanwhile
    }
  }
}

/**
 * Starts a long-running child (a server) whose output is kept, not shown: the bench prints its own
 * progress, and a child's output is printed only if it dies or never gets ready. Stopping it stops
 * everything it started too: the processes below it are killed if they outlive it.
 */
export function startChild(name: string, command: string, args: string[], options: ChildOptions = {}): Child {
  const log = options.logFile ? openSync(options.logFile, 'a') : undefined
  const proc = spawn(command, args, {
    env: options.env ?? process.env,
    cwd: options.cwd,
    stdio: ['ignore', log ?? 'pipe', log ?? 'pipe'],
  })
  if (log !== undefined) closeSync(log)
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
    tail: () => [...lines, ...(options.logFile ? [fileTail(options.logFile)] : [])].join('\n'),
    async waitFor(pattern: RegExp, timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs
      while (!pattern.test(child.tail())) {
        if (exited(proc))
          throw new Error(`${name} exited (${proc.exitCode ?? proc.signalCode}):\n${child.tail()}`)
        if (Date.now() > deadline) throw new Error(`${name} never printed ${pattern}:\n${child.tail()}`)
        await sleep(100)
      }
    },
    async stop() {
      children.delete(child)
      const below = proc.pid === undefined ? [] : descendants(proc.pid)
      if (!exited(proc)) {
        const gone = new Promise<void>((resolve) => proc.once('exit', () => resolve()))
        const target = options.stopTarget?.() ?? proc.pid
        try {
          if (target !== undefined) process.kill(target, 'SIGTERM')
        } catch {
          proc.kill('SIGTERM')
        }
        const grace = options.graceMs ?? STOP_GRACE_MS
        const inTime = await Promise.race([gone.then(() => true), sleep(grace).then(() => false)])
        if (!inTime && !exited(proc)) {
          killSeen(below)
          proc.kill('SIGKILL')
          await gone
        }
      }
      killSeen(below)
      options.afterStop?.()
    },
  }
  children.add(child)
  return child
}

/** Stops every child still running (in parallel). */
export async function stopAll(): Promise<void> {
  await Promise.allSettled([...children].map((child) => child.stop()))
}

/**
 * Children are ended on normal exit, on an error and on Ctrl-C/SIGTERM. `exit` handlers cannot wait,
 * so the last resort is a synchronous SIGKILL to whatever is still alive, and to what it started.
 */
export function installCleanup(onSignal: () => Promise<void>): void {
  process.on('exit', () => {
    for (const child of children) {
      if (child.process.pid !== undefined) killSeen(descendants(child.process.pid))
      if (!exited(child.process)) child.process.kill('SIGKILL')
    }
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

/** `count` distinct free ports. */
export async function freePorts(count: number): Promise<number[]> {
  const ports = await Promise.all(Array.from({ length: count }, freePort))
  if (new Set(ports).size !== ports.length) throw new Error('the kernel handed out one port twice; run again')
  return ports
}

/** Polls `url` until it answers 200, within `timeoutMs`; a child that dies meanwhile fails at once. */
export async function waitForOk(url: string, child: Child, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  let last = 'no answer'
  while (Date.now() < deadline) {
    if (exited(child.process)) {
      throw new Error(
        `${child.name} exited (${child.process.exitCode ?? child.process.signalCode}):\n${child.tail()}`,
      )
    }
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(2_000) })
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
export function startTsx(name: string, file: string, options: ChildOptions = {}): Child {
  return startChild(name, process.execPath, ['--import', import.meta.resolve('tsx'), file], options)
}
