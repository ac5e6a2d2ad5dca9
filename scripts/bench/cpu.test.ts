import { describe, expect, it } from 'vitest'
import { groupDeltas } from './cpu'
import type { Proc } from './procfs'

const proc = (pid: number, ppid: number, comm: string, ticks: number, startedAt = 1): Proc => ({
  pid,
  ppid,
  comm,
  ticks,
  startedAt,
})

describe('CPU by group', () => {
  const groups = [
    { name: 'HTTP workers', pids: [11, 12] },
    { name: 'primary', tree: 10 },
    { name: 'MariaDB', comm: /^mariadbd$/ },
  ]

  it('counts each process in the first group that names it, from its own ticks in the window', () => {
    const before = [
      proc(10, 1, 'node', 100),
      proc(11, 10, 'node', 200),
      proc(12, 10, 'node', 300),
      proc(13, 10, 'esbuild', 5),
    ]
    const after = [
      proc(10, 1, 'node', 110),
      proc(11, 10, 'node', 250),
      proc(12, 10, 'node', 330),
      proc(13, 10, 'esbuild', 6),
    ]
    const deltas = groupDeltas(before, after, groups)
    expect(deltas.get('HTTP workers')).toBe(80)
    // The tree gets its root and the rest below it, not the workers already counted.
    expect(deltas.get('primary')).toBe(11)
    expect(deltas.get('MariaDB')).toBe(0)
  })

  it('counts a process that started in the window in full, and one that ended not at all', () => {
    const before = [
      proc(20, 1, 'mariadbd', 1_000),
      proc(21, 1, 'mariadbd', 5_000),
      proc(22, 1, 'mariadbd', 70, 5),
    ]
    // 21 ended (someone else's server); 22's pid now belongs to a new process; 23 is new.
    const after = [proc(20, 1, 'mariadbd', 1_040), proc(22, 1, 'mariadbd', 3, 9), proc(23, 1, 'mariadbd', 7)]
    expect(groupDeltas(before, after, groups).get('MariaDB')).toBe(40 + 3 + 7)
  })
})
