import { spawn } from 'node:child_process'
import { closeSync, openSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'

export const REPO_ROOT = new URL('../../', import.meta.url).pathname

const READY_TIMEOUT_MS = 90_000
const STOP_GRACE_MS = 15_000

/** `npm start`'s own command line, read from package.json so that the suite starts what a user starts. */
export function startCommand(): string {
  const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as {
    scripts?: Record<string, string>
  }
  const command = pkg.scripts?.start
  if (!command) throw new Error('package.json has no start script')
  return command
}

export type Service = {
  baseUrl: string
  logFile: string
  /** Whether every process of its group has exited. */
  exited(): boolean
  stop(): Promise<void>
}

const groupAlive = (pgid: number) => {
  try {
    process.kill(-pgid, 0)
    return true
  } catch {
    return false
  }
}

/**
 * Starts `npm start`'s script in a process group of its own (it may fork HTTP workers and worker
 * processes), its output to `logFile`, and resolves once GET /health/ready answers 200. `stop` sends
 * SIGTERM to the whole group, as a supervisor would, and SIGKILL to what is left after the grace period.
 */
export async function startService(options: {
  env: Record<string, string>
  port: number
  logFile: string
}): Promise<Service> {
  const out = openSync(options.logFile, 'a')
  const child = spawn('sh', ['-c', startCommand()], {
    cwd: REPO_ROOT,
    env: {
      ...process.env,
      // As `npm start` would find them: the project's own binaries first.
      PATH: `${join(REPO_ROOT, 'node_modules/.bin')}:${process.env.PATH ?? ''}`,
      ...options.env,
      PORT: String(options.port),
    },
    detached: true,
    stdio: ['ignore', out, out],
  })
  closeSync(out)
  const pgid = child.pid
  if (pgid === undefined) throw new Error('npm start could not be spawned')
  let leaderExit: string | undefined
  child.once('exit', (code, signal) => {
    leaderExit = signal ?? String(code)
  })
  // Whatever happens to the suite, it never leaves a service behind. The group is detached, so a Ctrl-C
  // in the terminal reaches only the suite, which must pass it on; and on a signal Node exits without
  // its 'exit' event unless something handles the signal.
  const killOnExit = () => {
    if (groupAlive(pgid)) process.kill(-pgid, 'SIGKILL')
  }
  const onSignal = (signal: NodeJS.Signals) => {
    killOnExit()
    process.exit(signal === 'SIGINT' ? 130 : 143)
  }
  process.once('exit', killOnExit)
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)

  const baseUrl = `http://127.0.0.1:${options.port}`
  const service: Service = {
    baseUrl,
    logFile: options.logFile,
    exited: () => !groupAlive(pgid),
    async stop() {
      process.off('exit', killOnExit)
      process.off('SIGINT', onSignal)
      process.off('SIGTERM', onSignal)
      if (!groupAlive(pgid)) return
      process.kill(-pgid, 'SIGTERM')
      const deadline = Date.now() + STOP_GRACE_MS
      while (groupAlive(pgid) && Date.now() < deadline) await sleep(100)
      if (groupAlive(pgid)) process.kill(-pgid, 'SIGKILL')
    },
  }

  const deadline = Date.now() + READY_TIMEOUT_MS
  for (;;) {
    if (leaderExit !== undefined) {
      await service.stop()
      throw new Error(`npm start exited (${leaderExit}) before it was ready:\n${tail(options.logFile)}`)
    }
    try {
      const response = await fetch(`${baseUrl}/health/ready`, { signal: AbortSignal.timeout(2_000) })
      await response.arrayBuffer()
      if (response.status === 200) return service
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await service.stop()
      throw new Error(
        `npm start was not ready within ${READY_TIMEOUT_MS / 1000} s:\n${tail(options.logFile)}`,
      )
    }
    await sleep(250)
  }
}

/** The last lines of a log, for error messages. */
export function tail(file: string, lines = 30): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n')
  } catch {
    return '(no log)'
  }
}
