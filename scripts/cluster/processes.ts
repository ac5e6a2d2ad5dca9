import { execFileSync, spawn } from 'node:child_process'
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs'
import { createConnection, createServer } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'

/** Starts a process in its own session, detached from the caller, its output appended to `log`. */
export function spawnDetached(
  command: string,
  args: string[],
  options: { env: NodeJS.ProcessEnv; log: string },
): Started {
  const out = openSync(options.log, 'a')
  try {
    const child = spawn(command, args, {
      env: options.env,
      detached: true,
      stdio: ['ignore', out, out],
    })
    child.unref()
    if (child.pid === undefined) throw new Error(`${command} could not be started`)
    return { pid: child.pid, startTime: startTimeOf(child.pid) ?? '' }
  } finally {
    closeSync(out)
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    // A zombie still answers signal 0; its status in /proc says it is gone.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return !/^\d+ \(.*\) [ZX] /s.test(stat)
  } catch {
    return false
  }
}

/**
 * A started process, known by its pid and its start time (clock ticks after boot, from /proc): `stop`
 * signals a recorded pid only while both match, so a pid the kernel has since given to another
 * process is never touched.
 */
export type Started = { pid: number; startTime: string }

export function startTimeOf(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // The fields after the command name (which may hold spaces and parentheses); starttime is field 22.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]
  } catch {
    return undefined
  }
}

/** Whether the recorded process still runs (and is the one that was started). */
export const isOurs = (started: Started): boolean =>
  isAlive(started.pid) && startTimeOf(started.pid) === started.startTime

/** SIGTERM, then SIGKILL after `graceMs`: resolves once the process is gone. */
export async function terminate(started: Started, graceMs = 15_000): Promise<'stopped' | 'killed'> {
  const { pid } = started
  if (!isOurs(started)) return 'stopped'
  process.kill(pid, 'SIGTERM')
  const deadline = Date.now() + graceMs
  while (isAlive(pid)) {
    if (Date.now() > deadline) {
      process.kill(pid, 'SIGKILL')
      while (isAlive(pid)) await sleep(20)
      return 'killed'
    }
    await sleep(50)
  }
  return 'stopped'
}

/** Polls `check` until it holds; a `failed` that returns a message ends the wait at once. */
export async function waitUntil(
  what: string,
  check: () => boolean | Promise<boolean>,
  options: { timeoutMs?: number; failed?: () => string | undefined } = {},
): Promise<void> {
  const deadline = Date.now() + (options.timeoutMs ?? 60_000)
  for (;;) {
    if (await check()) return
    const failure = options.failed?.()
    if (failure) throw new Error(`${what}: ${failure}`)
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(100)
  }
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

/** Whether something accepts TCP connections on 127.0.0.1:port. */
export function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ port, host: '127.0.0.1' })
    const done = (answer: boolean) => {
      socket.destroy()
      resolve(answer)
    }
    socket.once('connect', () => done(true))
    socket.once('error', () => done(false))
    socket.setTimeout(1_000, () => done(false))
  })
}

/** The last lines of a log file, for an error message. */
export function tail(file: string, lines = 20): string {
  if (!existsSync(file)) return '(no log)'
  return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n')
}

/** The children of `pid` (nginx's workers), from /proc. */
export function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number)
  } catch {
    return []
  }
}

/**
 * The path of a Debian program, installed with apt-get when missing (this machine runs as root, as
 * `npm run bench` assumes too); undefined when it cannot be had.
 */
export function ensureProgram(
  program: string,
  aptPackage: string,
  say: (line: string) => void,
): string | undefined {
  const find = () => {
    for (const dir of ['/usr/sbin', '/usr/bin', '/usr/local/sbin', '/usr/local/bin']) {
      if (existsSync(`${dir}/${program}`)) return `${dir}/${program}`
    }
    return undefined
  }
  const found = find()
  if (found || process.getuid?.() !== 0) return found
  say(`${program} is missing: apt-get install -y ${aptPackage} …`)
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  try {
    execFileSync('apt-get', ['update', '-qq'], { stdio: 'ignore', env, timeout: 300_000 })
    execFileSync(
      'apt-get',
      ['install', '-y', '-qq', '-o', 'DPkg::Lock::Timeout=300', '--no-install-recommends', aptPackage],
      { stdio: 'ignore', env, timeout: 600_000 },
    )
  } catch {
    return undefined
  }
  return find()
}
