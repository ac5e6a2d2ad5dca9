import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { workerNames } from '../../shared/runtime/discover'
import { SHUTDOWN_DEADLINE_MS } from '../../shared/runtime/server'
import { type Child, startChild, waitForOk } from './processes'
import { commandLine, descendants, environment, readProc } from './procfs'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const TSX_CLI = fileURLToPath(import.meta.resolve('tsx/cli'))
/** The last line `npm start` prints once every child has said it is ready (scripts/start.ts). */
const STARTED = /^Metrics of every process: /m

/** `npm start`'s processes: the primary, its HTTP workers and one process per worker folder. */
export type ServiceProcesses = { primary: number; http: number[]; workers: Record<string, number> }

export type Service = Child & {
  processes: ServiceProcesses
  /** Fails loudly when a child of the primary died and was restarted: its CPU would be lost from the figures. */
  assertSameProcesses(after: string): void
}

/** The primary's cluster children by role, from their command line and the START_* variables they got. */
function findProcesses(tsxPid: number): ServiceProcesses | undefined {
  const below = descendants(tsxPid)
  const http: number[] = []
  const workers: Record<string, number> = {}
  let primary: number | undefined
  for (const p of below) {
    if (!commandLine(p.pid).includes('start-child')) continue
    const env = environment(p.pid)
    if (env.START_ROLE === 'http') http.push(p.pid)
    else if (env.START_ROLE === 'worker' && env.START_WORKER) workers[env.START_WORKER] = p.pid
    else continue
    primary = p.ppid
  }
  return primary === undefined ? undefined : { primary, http: http.sort((a, b) => a - b), workers }
}

export const describeProcesses = (p: ServiceProcesses) =>
  `primary ${p.primary}, HTTP workers ${p.http.join(', ')}, ${Object.entries(p.workers)
    .map(([name, pid]) => `${name} ${pid}`)
    .join(', ')}`

/**
 * The service exactly as `npm start` runs it (`tsx scripts/start.ts`: a primary, WEB_CONCURRENCY HTTP
 * workers, the outbox relay and the statistics consumer in processes of their own), its output going to
 * `logFile`. Ready once every child is up (the primary's last start-up line) and the port answers.
 */
export async function startService(options: {
  env: NodeJS.ProcessEnv
  port: number
  webConcurrency: number
  logFile: string
  timeoutMs?: number
}): Promise<Service> {
  let found: ServiceProcesses | undefined
  const child = startChild('the service (npm start)', process.execPath, [TSX_CLI, 'scripts/start.ts'], {
    env: options.env,
    cwd: ROOT,
    logFile: options.logFile,
    // The primary drains the HTTP workers, then the workers; tsx exits with it.
    stopTarget: () => found?.primary,
    graceMs: SHUTDOWN_DEADLINE_MS + 5_000,
  })
  const tsxPid = child.process.pid
  if (tsxPid === undefined) throw new Error(`could not start the service:\n${child.tail()}`)
  const expectedWorkers = workerNames()
  const deadline = Date.now() + (options.timeoutMs ?? 180_000)
  for (;;) {
    if (child.process.exitCode !== null || child.process.signalCode !== null) {
      throw new Error(`the service exited while starting:\n${child.tail()}`)
    }
    const log = readFileSync(options.logFile, 'utf8')
    found = findProcesses(tsxPid)
    if (
      STARTED.test(log) &&
      found &&
      found.http.length === options.webConcurrency &&
      expectedWorkers.every((name) => found?.workers[name] !== undefined)
    )
      break
    if (Date.now() > deadline) throw new Error(`the service did not start in time:\n${child.tail()}`)
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
  await waitForOk(`http://127.0.0.1:${options.port}/health/ready`, child)
  const processes = found
  const startedAt = new Map(
    [processes.primary, ...processes.http, ...Object.values(processes.workers)].map((pid) => [
      pid,
      readProc(pid)?.startedAt,
    ]),
  )
  return {
    ...child,
    processes,
    assertSameProcesses(after: string) {
      const gone = [...startedAt].filter(([pid, at]) => at === undefined || readProc(pid)?.startedAt !== at)
      if (gone.length > 0) {
        throw new Error(
          `a process of the service ended during ${after} (pids ${gone.map(([pid]) => pid).join(', ')} of ` +
            `${describeProcesses(processes)}):\n${child.tail()}`,
        )
      }
    },
  }
}
