import { setTimeout as sleep } from 'node:timers/promises'
import type { TcpProxy } from '../../shared/testing/tcp-proxy'

export type Dependency = 'mysql' | 'redis' | 'rabbitmq'
export type FaultKind = 'cut' | 'delay' | 'blackhole'

export type FaultPlan = {
  dependency: Dependency
  kind: FaultKind
  /** How long the fault lasts. */
  durationMs: number
  /** For delays: the latency added to every chunk each way. */
  latencyMs?: number
}

export type FaultRecord = FaultPlan & { startedAt: number; healedAt: number }

/**
 * Latency per dependency: MySQL's a tenth of a second per round trip (a transaction makes a dozen);
 * Redis's above the service's 1 s command timeout, so that its fallbacks are taken; RabbitMQ's half a
 * second per publish and confirm.
 */
const LATENCY: Record<Dependency, number> = { mysql: 100, redis: 1_200, rabbitmq: 500 }

const DEPENDENCIES: Dependency[] = ['mysql', 'redis', 'rabbitmq']

/** Every dependency in turn: cut, delayed and blackholed (full), or cut each and one delay and blackhole (short). */
export function faultPlan(short: boolean): FaultPlan[] {
  if (short) {
    const durationMs = 3_000
    return [
      ...DEPENDENCIES.map((dependency) => ({ dependency, kind: 'cut' as const, durationMs })),
      { dependency: 'mysql', kind: 'blackhole', durationMs },
      { dependency: 'redis', kind: 'delay', durationMs, latencyMs: LATENCY.redis },
    ]
  }
  const durationMs = 6_000
  return DEPENDENCIES.flatMap((dependency) =>
    (['cut', 'delay', 'blackhole'] as const).map((kind) => ({
      dependency,
      kind,
      durationMs,
      ...(kind === 'delay' ? { latencyMs: LATENCY[dependency] } : {}),
    })),
  )
}

export const describeFault = (fault: FaultPlan) =>
  `${fault.kind} ${fault.dependency}${fault.latencyMs ? ` +${fault.latencyMs} ms` : ''} for ${fault.durationMs / 1000} s`

/**
 * Applies the plan one fault at a time with `calmMs` of health before each; whatever happens, every
 * proxy is healed at the end. Returns what was done, with times, once the last fault has healed.
 */
export async function runFaults(
  proxies: Record<Dependency, TcpProxy>,
  plan: FaultPlan[],
  calmMs: number,
  onEvent: (line: string) => void,
): Promise<FaultRecord[]> {
  const done: FaultRecord[] = []
  const started = Date.now()
  const at = () => `${((Date.now() - started) / 1000).toFixed(1).padStart(5)} s`
  try {
    for (const fault of plan) {
      await sleep(calmMs)
      const proxy = proxies[fault.dependency]
      const startedAt = Date.now()
      if (fault.kind === 'cut') await proxy.cut({ reset: true })
      else if (fault.kind === 'blackhole') await proxy.blackhole()
      else await proxy.delay(fault.latencyMs ?? LATENCY[fault.dependency])
      onEvent(`${at()}  ${describeFault(fault)}`)
      try {
        await sleep(fault.durationMs)
      } finally {
        await proxy.restore()
        done.push({ ...fault, startedAt, healedAt: Date.now() })
        onEvent(`${at()}  healed ${fault.dependency}`)
      }
    }
  } finally {
    for (const proxy of Object.values(proxies)) await proxy.restore()
  }
  return done
}
