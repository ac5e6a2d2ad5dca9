import { setTimeout as sleep } from 'node:timers/promises'
import type { Db } from '../../shared/db/client'
import { checkInvariants, type InvariantScope } from '../../shared/invariants/check'
import { type CpuGroup, createCpuMeter } from './cpu'
import { type Outcome, type Sample, summarize } from './load'
import type { Side } from './report'
import type { Profile } from './settings'

const started = performance.now()

/** A progress line with the time since the bench started. */
export function progress(line: string): void {
  const at = ((performance.now() - started) / 1000).toFixed(1).padStart(6)
  process.stdout.write(`[${at} s] ${line}\n`)
}

export const secondsSinceStart = () => (performance.now() - started) / 1000

const statusText = (statuses: Record<string, number>) =>
  Object.entries(statuses)
    .map(([k, v]) => `${k}: ${v}`)
    .join(', ')

export const describeOutcome = (o: Outcome, unit: string) =>
  `${o.perSecond.toFixed(0)} ${unit}, p50 ${o.p50Ms.toFixed(1)} ms, p99 ${o.p99Ms.toFixed(1)} ms (${statusText(o.statuses)})`

/** Anything but the expected statuses, or any connection error, makes the run worthless: stop loudly. */
export function expectOnly(label: string, s: Sample | Outcome, allowed: string[]): void {
  const unexpected = Object.entries(s.statuses).filter(([k]) => !allowed.includes(k))
  if (unexpected.length > 0 || s.errors > 0) {
    throw new Error(
      `${label}: unexpected responses {${statusText(Object.fromEntries(unexpected))}}, ${s.errors} connection errors`,
    )
  }
}

export async function assertInvariants(db: Db, label: string, scope: InvariantScope): Promise<void> {
  const violations = await checkInvariants(db, scope)
  if (violations.length > 0) {
    throw new Error(`INVARIANTS VIOLATED after ${label}:\n  ${violations.slice(0, 50).join('\n  ')}`)
  }
  const counts = Object.entries(scope)
    .map(([k, v]) => `${(v as number[]).length} ${k.replace(/Ids$/, 's')}`)
    .join(', ')
  progress(`invariants hold after ${label} (${counts})`)
}

/** Names of the CPU groups (the workers' groups are named after their folders: outbox-relay, stats-consumer). */
export const GROUP = {
  http: 'HTTP workers',
  primary: 'primary (+ tsx)',
  ceiling: 'ceiling app',
  nginx: 'nginx',
  mariadb: 'MariaDB',
  redis: 'Redis',
  rabbitmq: 'RabbitMQ',
  bench: 'bench (load)',
} as const

export type BenchContext = {
  profile: Profile
  db: Db
  /** The processes whose CPU is measured, in the order they are counted (see CpuGroup). */
  cpuGroups: () => CpuGroup[]
  /** nginx's ports: in front of the service and in front of the read ceiling. */
  via: { service: number; ceiling: number }
  /** Called after each scenario: fails if a process of the service died and was restarted meanwhile. */
  checkService(after: string): void
}

export type SideSpec = {
  name: string
  /** The CPU group whose time per response is this side's cost. */
  serving: string
  round: () => Promise<Sample>
  allowed: string[]
  /** The status counted as throughput (every response when unset). */
  counted?: string
}

/**
 * Runs the sides in alternating rounds (A, B, A, B, …, each after a pause), so that whatever else the
 * shared machine does weighs on all sides alike; each side's samples and CPU are summed over its rounds.
 */
export async function alternate(
  ctx: BenchContext,
  label: string,
  sides: SideSpec[],
  rounds = ctx.profile.rounds,
): Promise<Side[]> {
  const meters = sides.map(() => createCpuMeter(ctx.cpuGroups))
  const samples: Sample[][] = sides.map(() => [])
  for (let round = 1; round <= rounds; round++) {
    for (const [i, side] of sides.entries()) {
      await sleep(ctx.profile.settleMs)
      const s = await meters[i]?.measure(side.round)
      if (!s) throw new Error('a round produced no sample')
      expectOnly(`${label}, ${side.name}`, s, side.allowed)
      samples[i]?.push(s)
    }
    progress(`  round ${round}/${rounds} done`)
  }
  return sides.map((side, i) => ({
    name: side.name,
    serving: side.serving,
    outcome: summarize(samples[i] ?? [], side.counted),
    cpu: (meters[i] as ReturnType<typeof createCpuMeter>).result(),
  }))
}

export const roundRobin = <T>(items: T[]) => {
  let i = 0
  return () => items[i++ % items.length] as T
}

export const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length === 0
    ? 0
    : sorted.length % 2
      ? (sorted[mid] as number)
      : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2
}
