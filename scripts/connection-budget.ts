/**
 * The MySQL connection budget of a topology: every process keeps its own pools, so the worst case a
 * MariaDB server sees is every instance of every process kind with both pools full at once. Pure: the
 * Compose and local-cluster generators (scripts/gen-infra.ts) and the Kubernetes manifests (with HPA
 * maxReplicas and maxSurge) call it with their own numbers. docs/scaling.md#connection-proxy says what
 * to do when a topology does not fit.
 */

/** One kind of process (a function, a worker, `npm start`'s HTTP workers) and how many may run at once. */
export type ProcessPools = {
  name: string
  /** The most instances running at once: Compose replicas, the cluster's instances, HPA maxReplicas. */
  instances: number
  /** Extra instances a rolling update runs beside them (Kubernetes maxSurge); 0 where the old one stops first. */
  surge?: number
  /** DATABASE_POOL_SIZE of each instance. */
  poolSize: number
  /** DATABASE_REPLICA_POOL_SIZE of each instance; 0 when it is not given a replica. */
  replicaPoolSize: number
}

export type BudgetLimits = {
  /** The most max_connections one MariaDB server may be given (memory per connection is the operator's call). */
  ceiling: number
  /** Left free for what no pool counts: migrations, replication threads, an operator's client, exporters. */
  headroom: number
}

/**
 * One MariaDB server of ours (Compose, the local cluster, the one Kubernetes talks to): at most 500
 * connections (each costs memory and a thread), 20 of them kept for migrations, replication, operators
 * and exporters.
 */
export const MARIADB_LIMITS: BudgetLimits = { ceiling: 500, headroom: 20 }

export type BudgetRow = { name: string; instances: number; primary: number; replica: number }

export type ConnectionBudget = {
  /** Worst-case connections to the primary and to the replica. */
  primary: number
  replica: number
  /** What to set as max_connections on both servers: the larger worst case plus the headroom. */
  maxConnections: number
  limits: BudgetLimits
  rows: BudgetRow[]
}

export class ConnectionBudgetError extends Error {
  override name = 'ConnectionBudgetError'
}

const isCount = (value: number) => Number.isInteger(value) && value >= 0

/**
 * Adds up the pools of every instance. Refuses (ConnectionBudgetError) a topology whose worst case, on
 * either server, is above the ceiling less the headroom, naming the largest consumers.
 */
export function connectionBudget(processes: ProcessPools[], limits: BudgetLimits): ConnectionBudget {
  if (!isCount(limits.ceiling) || !isCount(limits.headroom) || limits.headroom >= limits.ceiling) {
    throw new ConnectionBudgetError(
      `ceiling ${limits.ceiling} and headroom ${limits.headroom}: both whole numbers, the headroom below the ceiling`,
    )
  }
  const names = new Set<string>()
  const rows = processes.map((p): BudgetRow => {
    const surge = p.surge ?? 0
    for (const [field, value] of Object.entries({
      instances: p.instances,
      surge,
      poolSize: p.poolSize,
      replicaPoolSize: p.replicaPoolSize,
    })) {
      if (!isCount(value)) throw new ConnectionBudgetError(`${p.name}: ${field} must be a whole number ≥ 0`)
    }
    if (names.has(p.name)) throw new ConnectionBudgetError(`${p.name} is listed twice`)
    names.add(p.name)
    const instances = p.instances + surge
    return {
      name: p.name,
      instances,
      primary: instances * p.poolSize,
      replica: instances * p.replicaPoolSize,
    }
  })
  const primary = rows.reduce((sum, row) => sum + row.primary, 0)
  const replica = rows.reduce((sum, row) => sum + row.replica, 0)
  const allowed = limits.ceiling - limits.headroom
  for (const [server, total, of] of [
    ['primary', primary, (row: BudgetRow) => row.primary],
    ['replica', replica, (row: BudgetRow) => row.replica],
  ] as const) {
    if (total <= allowed) continue
    const largest = [...rows]
      .sort((a, b) => of(b) - of(a))
      .slice(0, 3)
      .map((row) => `${row.name} ${row.instances} × ${of(row) / (row.instances || 1)} = ${of(row)}`)
    throw new ConnectionBudgetError(
      `Over the connection budget: up to ${total} connections to the ${server}, but a server may have ` +
        `${limits.ceiling} (max_connections) less ${limits.headroom} of headroom = ${allowed}. ` +
        `Largest: ${largest.join(', ')}. Run fewer instances, lower DATABASE_POOL_SIZE / ` +
        'DATABASE_REPLICA_POOL_SIZE, or put the connection proxy in front (docs/scaling.md#connection-proxy).',
    )
  }
  return { primary, replica, maxConnections: Math.max(primary, replica) + limits.headroom, limits, rows }
}
