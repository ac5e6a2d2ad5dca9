import { readdirSync, readFileSync } from 'node:fs'

/** What the bench reads about a process from /proc/<pid>/stat. */
export type Proc = {
  pid: number
  ppid: number
  comm: string
  /** CPU time, user + system, all threads, in clock ticks. */
  ticks: number
  /** When it started, in ticks since boot: with the pid, it tells a process from a later one given the same pid. */
  startedAt: number
}

function parseStat(pid: number, stat: string): Proc {
  // The command sits in parentheses and may itself contain spaces and parentheses.
  const close = stat.lastIndexOf(')')
  const fields = stat.slice(close + 2).split(' ')
  return {
    pid,
    ppid: Number(fields[1]),
    comm: stat.slice(stat.indexOf('(') + 1, close),
    ticks: Number(fields[11]) + Number(fields[12]),
    startedAt: Number(fields[19]),
  }
}

/** One process, or undefined once it is gone (or only a zombie waiting for its parent). */
export function readProc(pid: number): Proc | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    if (/^\d+ \(.*\) Z/s.test(stat)) return undefined
    return parseStat(pid, stat)
  } catch {
    return undefined
  }
}

/** Every process on the machine; empty where /proc is missing. */
export function readProcs(): Proc[] {
  let entries: string[]
  try {
    entries = readdirSync('/proc').filter((name) => /^\d+$/.test(name))
  } catch {
    return []
  }
  const procs: Proc[] = []
  for (const name of entries) {
    try {
      procs.push(parseStat(Number(name), readFileSync(`/proc/${name}/stat`, 'utf8')))
    } catch {
      // the process ended while we looked
    }
  }
  return procs
}

/** The pids below `root` (children, their children, …), not `root` itself. */
export function descendants(root: number, procs: Proc[] = readProcs()): Proc[] {
  const children = new Map<number, Proc[]>()
  for (const p of procs) children.set(p.ppid, [...(children.get(p.ppid) ?? []), p])
  const found: Proc[] = []
  const stack = [...(children.get(root) ?? [])]
  // Bounded by the number of processes: a process has one parent, so each is visited once.
  for (let guard = 0; stack.length > 0 && guard <= procs.length; guard++) {
    const p = stack.pop() as Proc
    found.push(p)
    stack.push(...(children.get(p.pid) ?? []))
  }
  return found
}

const readNulSeparated = (path: string) => {
  try {
    return readFileSync(path, 'utf8').split('\0').filter(Boolean)
  } catch {
    return []
  }
}

export const commandLine = (pid: number) => readNulSeparated(`/proc/${pid}/cmdline`).join(' ')

/** The environment a process was started with (readable for our own children, as the same user). */
export function environment(pid: number): Record<string, string> {
  return Object.fromEntries(
    readNulSeparated(`/proc/${pid}/environ`).map((entry) => {
      const at = entry.indexOf('=')
      return [entry.slice(0, at), entry.slice(at + 1)]
    }),
  )
}

/** Resident memory (VmRSS) in bytes, or undefined once the process is gone. */
export function residentBytes(pid: number): number | undefined {
  try {
    const match = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return match ? Number(match[1]) * 1024 : undefined
  } catch {
    return undefined
  }
}

/** Busy ticks of the whole machine, all CPUs (everything but idle and iowait). */
export function machineBusyTicks(): number {
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
