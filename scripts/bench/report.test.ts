import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { summarize } from './load'
import { type Results, writeBenchmarksDoc } from './report'

const dir = mkdtempSync(join(tmpdir(), 'bench-report-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const side = (name: string, perSecond: number) => ({
  name,
  serving: 'HTTP workers',
  outcome: summarize([{ statuses: { '200': perSecond }, latenciesMs: [1, 2, 3], seconds: 1, errors: 0 }]),
  cpu: {
    cores: { 'HTTP workers': 0.5, other: 0.1 },
    seconds: 1,
    cpuSeconds: { 'HTTP workers': 0.5, other: 0.1 },
  },
})

const results: Results = {
  command: 'npm run bench',
  machine: {
    date: '2026-11-29T00:00:00.000Z',
    cpus: 2,
    cpuModel: 'test CPU',
    memoryGiB: 4,
    node: 'v20',
    mariadb: 'MariaDB 10.11',
    redis: '7.0',
    rabbitmq: '3.10',
    nginx: 'nginx/1.22',
  },
  notes: [],
  scenarios: [
    {
      title: '1. product read',
      method: 'reads',
      targets: [
        { scenario: '1. product read', measure: 'req/s', measured: '0.80x', target: '>= 0.70x', met: true },
        { scenario: '1. product read', measure: 'p99', measured: '2.00x', target: '<= 1.5x', met: false },
      ],
      comparisons: [
        {
          scenario: '1. product read',
          unit: 'req/s',
          service: side('service', 80),
          ceiling: side('bare', 100),
        },
      ],
    },
  ],
  totalSeconds: 12,
}

describe('the benchmarks document', () => {
  it('rewrites only what lies between its markers, with each target met or NOT MET', () => {
    const path = join(dir, 'kept.md')
    writeFileSync(
      path,
      '# Benchmarks\n\nMethod, by hand.\n\n<!-- bench:results:start -->\nold run\n<!-- bench:results:end -->\n\nAfter.\n',
    )
    writeBenchmarksDoc(path, results)
    const text = readFileSync(path, 'utf8')
    expect(text.startsWith('# Benchmarks\n\nMethod, by hand.\n\n<!-- bench:results:start -->')).toBe(true)
    expect(text.endsWith('<!-- bench:results:end -->\n\nAfter.\n')).toBe(true)
    expect(text).not.toContain('old run')
    expect(text).toContain('Command: `npm run bench`')
    expect(text).toContain('Date: 2026-11-29T00:00:00.000Z')
    expect(text).toMatch(/\| 1\. product read \| req\/s \| 0\.80x \| >= 0\.70x \| met \|/)
    expect(text).toMatch(/\| 1\. product read \| p99 \| 2\.00x \| <= 1\.5x \| \*\*NOT MET\*\* \|/)
    expect(text).toContain('**0.80x**')
  })

  it('adds the section to a document that has no markers yet', () => {
    const path = join(dir, 'new.md')
    writeFileSync(path, '# Benchmarks\n')
    writeBenchmarksDoc(path, results)
    const text = readFileSync(path, 'utf8')
    expect(text.startsWith('# Benchmarks\n')).toBe(true)
    expect(text.match(/<!-- bench:results:start -->/g)).toHaveLength(1)
    expect(text.trimEnd().endsWith('<!-- bench:results:end -->')).toBe(true)
  })
})
