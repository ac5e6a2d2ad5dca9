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
  nginx: string
}

/** One side of a comparison: what the clients saw, and what each process spent meanwhile. */
export type Measured = { outcome: Outcome; cpu: CpuUse }
/** The flash sales of one variant, pooled; `secondsEach` is each whole sale's time. */
export type FlashSales = Measured & { secondsEach: number[] }

export type Results = {
  machine: Machine
  settings: {
    connections: number
    rounds: number
    roundSeconds: number
    warmupSeconds: number
    readProducts: number
    orderProducts: number
    orderBuyers: number
    poolSize: number
    flash: { stock: number; buyers: number; concurrency: number; order: string }
  }
  read: { service: Measured; ceiling: Measured; bodyBytes: number; stockLoadsPerSecond: number }
  orders: { service: Measured; ceiling: Measured }
  flash: { gate: FlashSales; noGate: FlashSales }
  totalSeconds: number
}

const fixed = (n: number, digits = 0) => n.toFixed(digits)
const ms = (n: number) => (n >= 100 ? n.toFixed(0) : n.toFixed(1))
const percent = (a: number, b: number) => (b === 0 ? 'n/a' : `${((a / b) * 100).toFixed(0)} %`)
const mean = (values: number[]) =>
  values.length === 0 ? 0 : values.reduce((a, b) => a + b, 0) / values.length

function table(head: string[], rows: string[][]): string {
  return [head, head.map(() => '---'), ...rows].map((cells) => `| ${cells.join(' | ')} |`).join('\n')
}

/** Round i of one side against round i of the other: how much the pairs disagreed. */
const roundRange = (a: Outcome, b: Outcome) => {
  const ratios = a.rounds.map((x, i) => x / (b.rounds[i] ?? Number.NaN)).filter(Number.isFinite)
  if (ratios.length === 0) return 'n/a'
  const pct = (r: number) => `${(r * 100).toFixed(0)}`
  return `${pct(Math.min(...ratios))}–${pct(Math.max(...ratios))} %`
}

const CPU_COLUMNS = [
  'service',
  'service, gate off',
  'ceiling app',
  'nginx',
  'MariaDB',
  'Redis',
  'bench (load)',
  'other',
]

function cpuRow(label: string, m: Measured, serverName: string): string[] {
  const cores = CPU_COLUMNS.map((name) => fixed(m.cpu.cores[name] ?? 0, 2))
  const serverMs = ((m.cpu.cpuSeconds[serverName] ?? 0) * 1000) / Math.max(1, m.outcome.responses)
  return [label, ...cores, fixed(serverMs, 2)]
}

/** The results as Markdown tables: printed to the terminal and written to docs/benchmarks.md alike. */
export function resultTables(r: Results): string {
  const { read, orders } = r
  const gate = r.flash.gate
  const noGate = r.flash.noGate
  const throughput = table(
    [
      'scenario',
      'service',
      'ceiling',
      'service / ceiling',
      'per-round range',
      'service p50 / p99 ms',
      'ceiling p50 / p99 ms',
    ],
    [
      [
        'product read: GET /v1/products/:id vs bare Hono (req/s)',
        fixed(read.service.outcome.perSecond),
        fixed(read.ceiling.outcome.perSecond),
        `**${percent(read.service.outcome.perSecond, read.ceiling.outcome.perSecond)}**`,
        roundRange(read.service.outcome, read.ceiling.outcome),
        `${ms(read.service.outcome.p50Ms)} / ${ms(read.service.outcome.p99Ms)}`,
        `${ms(read.ceiling.outcome.p50Ms)} / ${ms(read.ceiling.outcome.p99Ms)}`,
      ],
      [
        'order placement: POST /v1/orders vs the raw SQL (orders/s)',
        fixed(orders.service.outcome.perSecond),
        fixed(orders.ceiling.outcome.perSecond),
        `**${percent(orders.service.outcome.perSecond, orders.ceiling.outcome.perSecond)}**`,
        roundRange(orders.service.outcome, orders.ceiling.outcome),
        `${ms(orders.service.outcome.p50Ms)} / ${ms(orders.service.outcome.p99Ms)}`,
        `${ms(orders.ceiling.outcome.p50Ms)} / ${ms(orders.ceiling.outcome.p99Ms)}`,
      ],
    ],
  )
  const saleRow = (label: string, m: FlashSales) => {
    const o = m.outcome
    const other = Object.entries(o.statuses)
      .filter(([k]) => k !== '201' && k !== '409 INSUFFICIENT_STOCK')
      .reduce((sum, [, v]) => sum + v, 0)
    const of = (key: string) => {
      const l = o.byStatus[key]
      return l ? `${ms(l.p50Ms)} / ${ms(l.p99Ms)}` : 'n/a'
    }
    return [
      label,
      `${fixed(mean(m.secondsEach), 2)} (${m.secondsEach.map((s) => fixed(s, 2)).join(', ')})`,
      String(o.statuses['201'] ?? 0),
      String(o.statuses['409 INSUFFICIENT_STOCK'] ?? 0),
      String(other),
      `${ms(o.p50Ms)} / ${ms(o.p99Ms)}`,
      of('201'),
      of('409 INSUFFICIENT_STOCK'),
    ]
  }
  const runs = r.flash.gate.secondsEach.length
  const sale = table(
    [
      'flash sale',
      'whole sale s, mean (each run)',
      `201, ${runs} runs`,
      '409 INSUFFICIENT_STOCK',
      'other',
      'p50 / p99 ms, all',
      '201 only',
      '409 only',
    ],
    [saleRow('stock gate on', gate), saleRow('stock gate off', noGate)],
  )
  const gateRatio = (a: number, b: number) => (b === 0 ? 'n/a' : (a / b).toFixed(2))
  const verdict =
    `Stock gate on / off: whole sale ${gateRatio(mean(gate.secondsEach), mean(noGate.secondsEach))}, ` +
    `p50 ${gateRatio(gate.outcome.p50Ms, noGate.outcome.p50Ms)}, p99 ${gateRatio(gate.outcome.p99Ms, noGate.outcome.p99Ms)} ` +
    '(below 1: faster with the gate).'
  const cpu = table(
    ['CPU, cores busy (of the machine)', ...CPU_COLUMNS, 'server CPU ms / response'],
    [
      cpuRow('product read, service', read.service, 'service'),
      cpuRow('product read, ceiling', read.ceiling, 'ceiling app'),
      cpuRow('order placement, service', orders.service, 'service'),
      cpuRow('order placement, raw SQL', orders.ceiling, 'bench (load)'),
      cpuRow('flash sale, gate on', gate, 'service'),
      cpuRow('flash sale, gate off', noGate, 'service, gate off'),
    ],
  )
  return [
    throughput,
    '',
    sale,
    '',
    verdict,
    '',
    cpu,
    '',
    `Stock cache loads during the service's read rounds: ${fixed(read.stockLoadsPerSecond)} MySQL reads/s.`,
  ].join('\n')
}

/** Every status seen, for the record (a run with anything unexpected fails before this is written). */
export function statusLines(r: Results): string {
  const list = (o: Outcome) =>
    Object.entries(o.statuses)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, v]) => `${k}: ${v}`)
      .join(', ')
  const gate = r.flash.gate
  const noGate = r.flash.noGate
  return [
    `- product read, service: ${list(r.read.service.outcome)}; ceiling: ${list(r.read.ceiling.outcome)}`,
    `- order placement, service: ${list(r.orders.service.outcome)}; raw SQL: ${list(r.orders.ceiling.outcome)}`,
    `- flash sales, gate on: ${list(gate.outcome)}; gate off: ${list(noGate.outcome)}`,
  ].join('\n')
}

const START = '<!-- bench:results:start -->'
const END = '<!-- bench:results:end -->'

function generatedSection(r: Results): string {
  const m = r.machine
  const s = r.settings
  const measured = s.rounds * s.roundSeconds
  return `${START}
<!-- Everything between these markers is rewritten by \`npm run bench\`; edit outside them. -->
## Last recorded run

- Command: \`npm run bench\` (took ${fixed(r.totalSeconds)} s in all)
- Date: ${m.date}
- Machine: ${m.cpus} CPUs (nproc), ${m.cpuModel}, ${fixed(m.memoryGiB, 1)} GiB RAM; Node ${m.node};
  ${m.mariadb}; Redis ${m.redis}; ${m.nginx}. The load generator, nginx, the Node servers, MariaDB and Redis
  all share these CPUs, and so does whatever else ran on the machine ("other" below).
- Load: through one nginx (1 worker, keep-alive upstreams, identical settings for every pair),
  ${s.connections} connections, ${measured} s per side in ${s.rounds} rounds of ${s.roundSeconds} s alternating
  with its ceiling, after a ${s.warmupSeconds} s warm-up each. Product reads go round-robin over ${s.readProducts}
  products (${r.read.bodyBytes}-byte product JSON; the ceiling returns a constant of the same size). Orders are
  1 unit, round-robin over ${s.orderBuyers} buyers and ${s.orderProducts} products; the raw-SQL ceiling runs
  ${s.connections} loops over a pool of ${s.poolSize} connections (the service's pool size) on its own
  buyers and products. Flash sales: stock ${s.flash.stock}, ${s.flash.buyers} distinct buyers each funded for
  exactly one unit, each ordering once, ${s.flash.concurrency} at a time, a fresh product and fresh buyers per
  sale, in the order gate ${s.flash.order}.

${resultTables(r)}

Responses:

${statusLines(r)}

checkInvariants over the bench's own products and users found nothing after the order scenario, after
every flash sale and at the end; every sale sold exactly its stock and left it at 0.
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
