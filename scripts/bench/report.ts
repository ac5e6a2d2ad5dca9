import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname } from 'node:path'
import type { CpuUse } from './cpu'
import type { Outcome } from './load'

export type Machine = {
  date: string
  cpus: number
  cpuModel: string
  memoryGiB: number
  node: string
  mariadb: string
  redis: string
  rabbitmq: string
  nginx: string
}

/** One side of a comparison: what the clients saw, what each process spent, and which group served it. */
export type Side = { name: string; outcome: Outcome; cpu: CpuUse; serving: string }

/** A scenario measured against its ceiling; `unit` is what `perSecond` counts. */
export type Comparison = { scenario: string; unit: string; service: Side; ceiling: Side }

/** One target the service is held to, and whether this run met it. */
export type Target = { scenario: string; measure: string; measured: string; target: string; met: boolean }

/** One scenario's part of the report. */
export type ScenarioReport = {
  title: string
  /** How it was run, with this run's numbers: the "Settings" list of the report. */
  method: string
  targets: Target[]
  comparisons?: Comparison[]
  /** Sides without a ceiling that still belong in the CPU table (event latency, flash sale). */
  cpu?: Side[]
  /** Lines (Markdown) with what the tables do not show. */
  details?: string[]
}

export type Results = {
  command: string
  machine: Machine
  notes: string[]
  scenarios: ScenarioReport[]
  totalSeconds: number
}

export const fixed = (n: number, digits = 0) =>
  n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
export const ms = (n: number) => (n >= 100 ? fixed(n) : n.toFixed(1))
export const ratio = (a: number, b: number) => (b === 0 ? 'n/a' : `${(a / b).toFixed(2)}x`)

/** "0.53x (3,649 vs 6,903 req/s)": a side's rate against its ceiling's. */
export const rateVs = (service: Side, ceiling: Side, unit: string) =>
  `${ratio(service.outcome.perSecond, ceiling.outcome.perSecond)} (${fixed(service.outcome.perSecond)} vs ${fixed(ceiling.outcome.perSecond)} ${unit})`

function table(head: string[], rows: string[][]): string {
  return [head, head.map(() => '---'), ...rows].map((cells) => `| ${cells.join(' | ')} |`).join('\n')
}

/** Round i of one side against round i of the other: how much the pairs disagreed. */
export function roundRange(a: Outcome, b: Outcome): string {
  const ratios = a.rounds.map((x, i) => x / (b.rounds[i] ?? Number.NaN)).filter(Number.isFinite)
  if (ratios.length === 0) return 'n/a'
  return `${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}x`
}

/** CPU milliseconds of `group` per response of this side. */
export const cpuMsPer = (side: Side, group = side.serving) =>
  ((side.cpu.cpuSeconds[group] ?? 0) * 1000) / Math.max(1, side.outcome.responses)

const statusList = (o: Outcome) =>
  Object.entries(o.statuses)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k}: ${fixed(v)}`)
    .join(', ')

function targetsTable(r: Results): string {
  return table(
    ['scenario', 'measure', 'this run', 'target', 'met'],
    r.scenarios.flatMap((s) =>
      s.targets.map((t) => [t.scenario, t.measure, t.measured, t.target, t.met ? 'met' : '**NOT MET**']),
    ),
  )
}

function comparisonsTable(r: Results): string {
  const rows = r.scenarios
    .flatMap((s) => s.comparisons ?? [])
    .map((c) => [
      c.scenario,
      `${fixed(c.service.outcome.perSecond)} ${c.unit}`,
      `${c.ceiling.name}: ${fixed(c.ceiling.outcome.perSecond)}`,
      `**${ratio(c.service.outcome.perSecond, c.ceiling.outcome.perSecond)}**`,
      roundRange(c.service.outcome, c.ceiling.outcome),
      `${ms(c.service.outcome.p50Ms)} / ${ms(c.service.outcome.p99Ms)}`,
      `${ms(c.ceiling.outcome.p50Ms)} / ${ms(c.ceiling.outcome.p99Ms)}`,
    ])
  return table(
    [
      'scenario',
      'service',
      'ceiling',
      'service / ceiling',
      'per-round range',
      'service p50 / p99 ms',
      'ceiling p50 / p99 ms',
    ],
    rows,
  )
}

function cpuTable(r: Results): string {
  const sides = r.scenarios.flatMap((s) => [
    ...(s.comparisons ?? []).flatMap((c) => [
      { label: `${c.scenario}, service`, side: c.service },
      { label: `${c.scenario}, ${c.ceiling.name}`, side: c.ceiling },
    ]),
    ...(s.cpu ?? []).map((side) => ({ label: `${s.title}, ${side.name}`, side })),
  ])
  const columns = [...new Set(sides.flatMap(({ side }) => Object.keys(side.cpu.cores)))]
  // "other" last, whatever order the groups came in.
  columns.sort((a, b) => Number(a === 'other') - Number(b === 'other'))
  return table(
    ['CPU, cores busy (of the machine)', ...columns, 'serving CPU ms / response'],
    sides.map(({ label, side }) => [
      label,
      ...columns.map((name) => (side.cpu.cores[name] ?? 0).toFixed(2)),
      `${cpuMsPer(side).toFixed(2)} (${side.serving})`,
    ]),
  )
}

function statusLines(r: Results): string {
  return r.scenarios
    .flatMap((s) => [
      ...(s.comparisons ?? []).map(
        (c) =>
          `- ${c.scenario}: service ${statusList(c.service.outcome)}; ${c.ceiling.name} ${statusList(c.ceiling.outcome)}`,
      ),
      ...(s.cpu ?? []).map((side) => `- ${s.title}, ${side.name}: ${statusList(side.outcome)}`),
    ])
    .join('\n')
}

/** The results as Markdown: printed to the terminal and written to docs/benchmarks.md alike. */
export function resultTables(r: Results): string {
  const details = r.scenarios
    .filter((s) => (s.details ?? []).length > 0)
    .map((s) => `**${s.title}.** ${(s.details ?? []).join(' ')}`)
  return [
    targetsTable(r),
    '',
    comparisonsTable(r),
    '',
    cpuTable(r),
    '',
    ...details.flatMap((d) => [d, '']),
    'Responses:',
    '',
    statusLines(r),
  ].join('\n')
}

const START = '<!-- bench:results:start -->'
const END = '<!-- bench:results:end -->'

function generatedSection(r: Results): string {
  const m = r.machine
  return `${START}
<!-- Everything between these markers is rewritten by \`npm run bench\`; edit outside them. -->
## Last recorded run

- Command: \`${r.command}\` (took ${fixed(r.totalSeconds)} s in all)
- Date: ${m.date}
- Machine: ${m.cpus} CPUs (nproc), ${m.cpuModel}, ${fixed(m.memoryGiB, 1)} GiB RAM; Node ${m.node};
  ${m.mariadb}; Redis ${m.redis}; RabbitMQ ${m.rabbitmq}; ${m.nginx}. The load generator, nginx, the
  service's processes, MariaDB, Redis and RabbitMQ all share these CPUs, and so does whatever else ran on
  the machine ("other" below).
${r.notes.map((n) => `- ${n}`).join('\n')}
- Settings of this run:
${r.scenarios.map((s) => `  - ${s.title}: ${s.method}`).join('\n')}

${resultTables(r)}

checkInvariants over the bench's own products, users and coupons found nothing after each scenario and
at the end.
${END}`
}

const PREAMBLE = `# Benchmarks

\`npm run bench\` (scripts/bench.ts) is the only place speed is measured; tests never time anything.

`

/** Rewrites the generated section of docs/benchmarks.md, keeping whatever was written around it. */
export function writeBenchmarksDoc(path: string, r: Results): void {
  let text = existsSync(path) ? readFileSync(path, 'utf8') : `${PREAMBLE}${START}\n${END}\n`
  if (!text.includes(START) || !text.includes(END) || text.indexOf(END) < text.indexOf(START)) {
    text = `${text.trimEnd()}\n\n${START}\n${END}\n`
  }
  const from = text.indexOf(START)
  const to = text.indexOf(END) + END.length
  mkdirSync(dirname(path), { recursive: true })
  writeFileSync(path, `${text.slice(0, from)}${generatedSection(r)}${text.slice(to)}`)
}
