import { readdirSync, readFileSync } from 'node:fs'

/** Linux's USER_HZ: /proc reports CPU time in these ticks (`getconf CLK_TCK`, 100 on every usual kernel). */
const TICKS_PER_SECOND = 100

type Proc = { pid: number; ppid: number; comm: string; ticks: number }

/** Every process's CPU time (user + system, all threads) from /proc; empty where /proc is missing. */
function readProcs(): Proc[] {
  let entries: string[]
  try {
    entries = readdirSync('/proc').filter((name) => /^\d+$/.test(name))
  } catch {
    return []
  }
  const procs: Proc[] = []
  for (const name of entries) {
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8')
      // The command sits in parentheses and may itself contain spaces and parentheses.
      const close = stat.lastIndexOf(')')
      const comm = stat.slice(stat.indexOf('(') + 1, close)
      const fields = stat.slice(close + 2).split(' ')
      procs.push({
        pid: Number(name),
        ppid: Number(fields[1]),
        comm,
        ticks: Number(fields[11]) + Number(fields[12]),
      })
    } catch {
      // the process ended while we looked
    }
  }
  return procs
}

/** Busy ticks of the whole machine, all CPUs (everything but idle and iowait). */
function machineBusyTicks(): number {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? ''
    const [, ...values] = line.trim().split(/\s+/)
    const n = values.map(Number)
    const idle = (n[3] ?? 0) + (n[4] ?? 0)
    return n.slice(0, 8).reduce((a, b) => a + b, 0) - idle
  } catch {
    return 0
  }
}

/**
 * Which processes make up a group: one process (`pid`), a process and its descendants (`tree`: nginx's
 * workers), or every process whose command matches `comm` (MariaDB, Redis).
 */
export type CpuGroup = { name: string; pid?: number; tree?: boolean; comm?: RegExp }

function groupTicks(procs: Proc[], groups: CpuGroup[]): Map<string, number> {
  const children = new Map<number, number[]>()
  for (const p of procs) children.set(p.ppid, [...(children.get(p.ppid) ?? []), p.pid])
  const byPid = new Map(procs.map((p) => [p.pid, p]))
  const result = new Map<string, number>()
  for (const group of groups) {
    let ticks = 0
    if (group.pid !== undefined && !group.tree) ticks += byPid.get(group.pid)?.ticks ?? 0
    if (group.pid !== undefined && group.tree) {
      const stack = [group.pid]
      // Bounded by the number of processes: every pid is visited once.
      for (let guard = 0; stack.length > 0 && guard < procs.length + 1; guard++) {
        const pid = stack.pop() as number
        ticks += byPid.get(pid)?.ticks ?? 0
        stack.push(...(children.get(pid) ?? []))
      }
    }
    if (group.comm) {
      for (const p of procs) if (group.comm.test(p.comm)) ticks += p.ticks
    }
    result.set(group.name, ticks)
  }
  return result
}

/** CPU use over a window, in cores (1.0 = one CPU busy all the time); "other" is everything not grouped. */
export type CpuUse = { cores: Record<string, number>; seconds: number; cpuSeconds: Record<string, number> }

/**
 * Measures how busy each group was over one or more windows (start/stop pairs): this is what tells
 * whether the service, nginx, MariaDB or the load generator is the one saturated, and how much of the
 * machine other work took while the bench ran.
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
