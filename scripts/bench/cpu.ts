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

function groupTicks(procs: Proc[], groups: CpuGroup[]): Map<string, number> {
  const byPid = new Map(procs.map((p) => [p.pid, p]))
  const counted = new Set<number>()
  const result = new Map<string, number>()
  for (const group of groups) {
    const members: Proc[] = []
    for (const pid of group.pids ?? []) {
      const p = byPid.get(pid)
      if (p) members.push(p)
    }
    if (group.tree !== undefined) {
      const root = byPid.get(group.tree)
      if (root) members.push(root, ...descendants(root.pid, procs))
    }
    if (group.comm) members.push(...procs.filter((p) => group.comm?.test(p.comm)))
    let ticks = 0
    for (const p of members) {
      if (counted.has(p.pid)) continue
      counted.add(p.pid)
      ticks += p.ticks
    }
    result.set(group.name, ticks)
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
      const before = groupTicks(readProcs(), list)
      const busyBefore = machineBusyTicks()
      const started = performance.now()
      try {
        return await work()
      } finally {
        seconds += (performance.now() - started) / 1000
        busy += machineBusyTicks() - busyBefore
        const after = groupTicks(readProcs(), list)
        for (const g of list) {
          total.set(g.name, (total.get(g.name) ?? 0) + (after.get(g.name) ?? 0) - (before.get(g.name) ?? 0))
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
