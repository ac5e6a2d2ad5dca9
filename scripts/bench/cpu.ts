import { descendants, machineBusyTicks, type Proc, readProcs } from './procfs'

/** Linux's USER_HZ: /proc reports CPU time in these ticks (`getconf CLK_TCK`, 100 on every usual kernel). */
const TICKS_PER_SECOND = 100

/**
 * Which processes make up a group: given pids (`pids`: the HTTP workers), a process and everything below
 * it (`tree`: nginx and its worker), or every process whose command matches `comm` (MariaDB, Redis).
 * Groups are taken in order and a process counts in the first group that names it, so a tree listed
 * after its own members (the service's primary after its HTTP workers) gets only the rest.
 */
export type CpuGroup = { name: string; pids?: number[]; tree?: number; comm?: RegExp }

/** Which group each process belongs to (the first that names it), by pid. */
function assignGroups(procs: Proc[], groups: CpuGroup[]): Map<number, string> {
  const byPid = new Map(procs.map((p) => [p.pid, p]))
  const owner = new Map<number, string>()
  const claim = (p: Proc | undefined, name: string) => {
    if (p && !owner.has(p.pid)) owner.set(p.pid, name)
  }
  for (const group of groups) {
    for (const pid of group.pids ?? []) claim(byPid.get(pid), group.name)
    if (group.tree !== undefined) {
      const root = byPid.get(group.tree)
      if (root) for (const p of [root, ...descendants(root.pid, procs)]) claim(p, group.name)
    }
    if (group.comm) for (const p of procs) if (group.comm.test(p.comm)) claim(p, group.name)
  }
  return owner
}

/**
 * Each group's CPU ticks between two snapshots, process by process: a process that started meanwhile
 * counts in full, and one that ended meanwhile (someone else's test server) counts nothing rather than
 * taking its whole past CPU time off its group.
 */
export function groupDeltas(before: Proc[], after: Proc[], groups: CpuGroup[]): Map<string, number> {
  const earlier = new Map(before.map((p) => [p.pid, p]))
  const owner = assignGroups(after, groups)
  const result = new Map<string, number>(groups.map((g) => [g.name, 0]))
  for (const p of after) {
    const name = owner.get(p.pid)
    if (name === undefined) continue
    const then = earlier.get(p.pid)
    const base = then && then.startedAt === p.startedAt ? then.ticks : 0
    result.set(name, (result.get(name) ?? 0) + p.ticks - base)
  }
  return result
}

/** CPU use over one or more windows: cores busy (1.0 = one CPU all the time) and CPU seconds, per group. */
export type CpuUse = { cores: Record<string, number>; seconds: number; cpuSeconds: Record<string, number> }

/**
 * Measures how busy each group was over one or more windows: this is what tells whether the service,
 * nginx, MariaDB or the load generator is the one saturated, and how much of the machine other work
 * took meanwhile ("other": every busy tick of the machine that no group accounts for).
 */
export function createCpuMeter(groups: () => CpuGroup[]) {
  const total = new Map<string, number>()
  let seconds = 0
  let busy = 0
  return {
    async measure<T>(work: () => Promise<T>): Promise<T> {
      const list = groups()
      const before = readProcs()
      const busyBefore = machineBusyTicks()
      const started = performance.now()
      try {
        return await work()
      } finally {
        seconds += (performance.now() - started) / 1000
        busy += machineBusyTicks() - busyBefore
        for (const [name, ticks] of groupDeltas(before, readProcs(), list)) {
          total.set(name, (total.get(name) ?? 0) + ticks)
        }
      }
    },
    result(): CpuUse {
      const cpuSeconds: Record<string, number> = {}
      let grouped = 0
      for (const [name, ticks] of total) {
        cpuSeconds[name] = ticks / TICKS_PER_SECOND
        grouped += ticks
      }
      cpuSeconds.other = Math.max(0, busy - grouped) / TICKS_PER_SECOND
      const cores = Object.fromEntries(
        Object.entries(cpuSeconds).map(([name, s]) => [name, seconds > 0 ? s / seconds : 0]),
      )
      return { cores, seconds, cpuSeconds }
    },
  }
}

export type CpuMeter = ReturnType<typeof createCpuMeter>
