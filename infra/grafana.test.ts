import { spawnSync } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { parse, stringify } from 'yaml'
import { createMetrics } from '../shared/metrics'
import { discoverFunctions } from '../shared/runtime/discover'

/**
 * The three dashboards of the design: system resources, application performance, business. Each must be
 * a dashboard Grafana can load, and every query must name a metric that exists with labels it has, so a
 * renamed metric or label fails here rather than as an empty panel in production.
 */

const GRAFANA = new URL('grafana/', import.meta.url).pathname
const PROMETHEUS_CONFIG = new URL('prometheus/prometheus.yml', import.meta.url).pathname
const PROMTOOL = spawnSync('promtool', ['--version'], { stdio: 'ignore' }).status === 0
const SKIP = PROMTOOL ? '' : ' (skipped: promtool is not installed; apt-get install -y prometheus)'

type Target = { refId: string; expr: string; legendFormat?: string; datasource?: { uid: string } }
type Panel = {
  id: number
  type: string
  title: string
  description?: string
  datasource?: { uid: string }
  gridPos: { h: number; w: number; x: number; y: number }
  targets?: Target[]
}
type Variable = { name: string; type: string; query: { query: string } }
type Dashboard = {
  uid: string
  title: string
  description: string
  schemaVersion: number
  panels: Panel[]
  templating: { list: Variable[] }
}

const DASHBOARDS = {
  'system-resources.json': 'commerce-system',
  'application-performance.json': 'commerce-application',
  'business.json': 'commerce-business',
} as const

const load = (file: string) =>
  JSON.parse(readFileSync(join(GRAFANA, 'dashboards', file), 'utf8')) as Dashboard

const queryPanels = (dashboard: Dashboard) => dashboard.panels.filter((panel) => panel.type !== 'row')
const targetsOf = (dashboard: Dashboard) => queryPanels(dashboard).flatMap((panel) => panel.targets ?? [])

// ---- What exists: metric name → the labels its series carry ---------------------------------------

type Scrape = {
  job_name: string
  params?: { family?: string[] }
  relabel_configs?: Array<{ target_label?: string }>
}

/** Labels Prometheus adds to every series of a target: job and instance, and our relabelled `function`. */
function targetLabels(): string[] {
  const config = parse(readFileSync(PROMETHEUS_CONFIG, 'utf8')) as { scrape_configs: Scrape[] }
  const relabelled = config.scrape_configs.flatMap((job) =>
    (job.relabel_configs ?? []).flatMap((rule) => (rule.target_label ? [rule.target_label] : [])),
  )
  return ['job', 'instance', ...relabelled]
}

/**
 * RabbitMQ's own metrics, as its Prometheus plugin names them. Only the queue_coarse_metrics family is
 * scraped per queue (prometheus.yml asks for it and nothing else); those series carry vhost and queue.
 */
const RABBITMQ_QUEUE_COARSE_METRICS = [
  'rabbitmq_detailed_queue_messages_ready',
  'rabbitmq_detailed_queue_messages_unacked',
  'rabbitmq_detailed_queue_messages',
  'rabbitmq_detailed_queue_process_reductions_total',
]

/** The label names a prom-client metric was declared with (a runtime field prom-client does not type). */
const labelNamesOf = (metric: object): string[] => {
  const names: unknown = (metric as { labelNames?: unknown }).labelNames
  return Array.isArray(names) ? names.map(String) : []
}

function knownSeries(): Map<string, Set<string>> {
  const common = targetLabels()
  const known = new Map<string, Set<string>>()
  // createMetrics registers the app's metrics and prom-client's default process and Node.js metrics.
  for (const metric of createMetrics().registry.getMetricsAsArray()) {
    const labels = [...labelNamesOf(metric), ...common]
    if (String(metric.type) === 'histogram') {
      known.set(`${metric.name}_bucket`, new Set([...labels, 'le']))
      known.set(`${metric.name}_sum`, new Set(labels))
      known.set(`${metric.name}_count`, new Set(labels))
    } else {
      known.set(metric.name, new Set(labels))
    }
  }
  for (const name of RABBITMQ_QUEUE_COARSE_METRICS)
    known.set(name, new Set(['vhost', 'queue', 'job', 'instance']))
  known.set('up', new Set(common))
  return known
}

// ---- What a query uses ------------------------------------------------------------------------------

/** Grafana's variables, replaced by values PromQL accepts, so that the expression can be parsed. */
const withVariables = (expr: string) =>
  expr.replace(/\$__(rate_interval|range|interval)\b/g, '5m').replace(/\$\w+/g, '.*')

const KEYWORDS = new Set([
  'and',
  'or',
  'unless',
  'bool',
  'offset',
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'inf',
  'nan',
])

type Usage = {
  metrics: string[]
  /** Label matchers inside a selector: [metric, label, value, operator]. */
  matchers: Array<{ metric: string; label: string; value: string; op: string }>
  /** Labels named by by/without/on/ignoring/group_left/group_right. */
  grouping: string[]
}

/**
 * The metric names, label matchers and grouping labels of a PromQL expression. Not a full parser: enough
 * for the expressions of these dashboards, whose syntax promtool checks separately.
 */
function usage(raw: string): Usage {
  const expr = withVariables(raw)
  const matchers: Usage['matchers'] = []
  const selectorNames: string[] = []
  // A selector's braces, skipping over quoted values (a route pattern may hold braces of its own).
  for (const selector of expr.matchAll(/([A-Za-z_:][\w:]*)?\s*\{((?:[^}"]|"(?:[^"\\]|\\.)*")*)\}/g)) {
    const metric = selector[1] ?? ''
    if (metric !== '') selectorNames.push(metric)
    for (const m of (selector[2] ?? '').matchAll(/(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"/g))
      matchers.push({ metric, label: m[1] as string, op: m[2] as string, value: m[3] as string })
  }
  const grouping = [
    ...expr.matchAll(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)/g),
  ].flatMap((m) =>
    (m[1] ?? '')
      .split(',')
      .map((label) => label.trim())
      .filter(Boolean),
  )
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
  const bareNames = [...bare.matchAll(/(?<![\w.])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()/g)]
    .map((m) => m[1] as string)
    .filter((name) => !KEYWORDS.has(name.toLowerCase()))
  return { metrics: [...new Set([...selectorNames, ...bareNames])], matchers, grouping }
}

/** Problems of one query against what exists: unknown metrics, and labels none of its metrics has. */
function problems(expr: string, legend: string, known: Map<string, Set<string>>): string[] {
  const used = usage(expr)
  const found: string[] = []
  for (const metric of used.metrics) if (!known.has(metric)) found.push(`unknown metric ${metric}`)
  for (const { metric, label } of used.matchers) {
    const labels = known.get(metric)
    if (labels && !labels.has(label)) found.push(`${metric} has no label ${label}`)
  }
  const anyLabel = new Set(used.metrics.flatMap((metric) => [...(known.get(metric) ?? [])]))
  const legendLabels = [...legend.matchAll(/\{\{\s*(\w+)\s*\}\}/g)].map((m) => m[1] as string)
  for (const label of [...used.grouping, ...legendLabels])
    if (!anyLabel.has(label)) found.push(`no metric of the query has the label ${label}`)
  return found
}

describe('infra/grafana', () => {
  it('provisions the Prometheus datasource the dashboards use, at the compose service address', () => {
    const { datasources } = parse(
      readFileSync(join(GRAFANA, 'provisioning/datasources/prometheus.yml'), 'utf8'),
    ) as { datasources: Array<{ uid: string; type: string; url: string }> }
    expect(datasources).toEqual([expect.objectContaining({ uid: 'prometheus', type: 'prometheus' })])
    expect(datasources[0]?.url).toBe('http://prometheus:9090')
  })

  it('loads dashboards from the folder docker-compose.yml mounts', () => {
    const { providers } = parse(
      readFileSync(join(GRAFANA, 'provisioning/dashboards/commerce.yml'), 'utf8'),
    ) as { providers: Array<{ options: { path: string } }> }
    const compose = readFileSync(join(GRAFANA, '..', '..', 'docker-compose.yml'), 'utf8')
    expect(compose).toContain(`./infra/grafana/dashboards:${providers[0]?.options.path}:ro`)
  })

  it('has the three dashboards, and only them', () => {
    const files = readdirSync(join(GRAFANA, 'dashboards')).sort()
    expect(files).toEqual(Object.keys(DASHBOARDS).sort())
    for (const [file, uid] of Object.entries(DASHBOARDS)) expect(load(file).uid, file).toBe(uid)
  })

  it.each(Object.keys(DASHBOARDS))('%s is a dashboard Grafana can load', (file) => {
    const dashboard = load(file)
    expect(dashboard.title).toMatch(/^Commerce: /)
    expect(dashboard.description.length).toBeGreaterThan(20)
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(36)
    const ids = dashboard.panels.map((panel) => panel.id)
    expect(new Set(ids).size).toBe(ids.length)

    // On the 24-column grid, and no two panels on the same cells.
    const taken = new Set<string>()
    for (const { title, gridPos: g } of dashboard.panels) {
      expect(g.x >= 0 && g.w > 0 && g.x + g.w <= 24 && g.y >= 0 && g.h > 0, title).toBe(true)
      for (let x = g.x; x < g.x + g.w; x++)
        for (let y = g.y; y < g.y + g.h; y++) {
          expect(taken.has(`${x},${y}`), `${title} overlaps at ${x},${y}`).toBe(false)
          taken.add(`${x},${y}`)
        }
    }

    const variables = new Set(dashboard.templating.list.map((variable) => variable.name))
    for (const panel of queryPanels(dashboard)) {
      expect(panel.title.length, `panel ${panel.id}`).toBeGreaterThan(0)
      expect(panel.description?.length ?? 0, panel.title).toBeGreaterThan(20)
      expect(panel.datasource?.uid, panel.title).toBe('prometheus')
      const targets = panel.targets ?? []
      expect(targets.length, panel.title).toBeGreaterThan(0)
      expect(new Set(targets.map((t) => t.refId)).size, panel.title).toBe(targets.length)
      for (const target of targets) {
        expect(target.datasource?.uid, panel.title).toBe('prometheus')
        for (const [, name] of target.expr.matchAll(/\$(?!__)(\w+)/g))
          expect(variables, `${panel.title} uses $${name}`).toContain(name)
      }
    }
  })

  it.each(Object.keys(DASHBOARDS))(
    '%s only queries metrics the code exports, by labels they have',
    (file) => {
      const known = knownSeries()
      const dashboard = load(file)
      const found = targetsOf(dashboard).flatMap((target) =>
        problems(target.expr, target.legendFormat ?? '', known).map((p) => `${target.expr}: ${p}`),
      )
      for (const variable of dashboard.templating.list) {
        const m = /^label_values\((\w+),\s*(\w+)\)$/.exec(variable.query.query)
        expect(m, variable.query.query).not.toBeNull()
        if (!known.get(m?.[1] ?? '')?.has(m?.[2] ?? '')) found.push(`variable ${variable.name}: ${m?.[0]}`)
      }
      expect(found).toEqual([])
    },
  )

  it('matches routes by the patterns the functions declare', async () => {
    const routes = new Set((await discoverFunctions()).map((fn) => `${fn.route.method} ${fn.route.path}`))
    const exact = Object.keys(DASHBOARDS)
      .flatMap((file) => targetsOf(load(file)))
      .map((target) => usage(target.expr).matchers)
      .filter((matchers) => matchers.some((m) => m.label === 'route' && m.op === '='))
    expect(exact.length).toBeGreaterThan(0)
    for (const matchers of exact) {
      const route = matchers.find((m) => m.label === 'route')?.value
      const method = matchers.find((m) => m.label === 'method')?.value
      expect(routes).toContain(`${method} ${route}`)
    }
  })

  it('shows what the design asks of each dashboard', () => {
    const metricsOf = (file: string) => new Set(targetsOf(load(file)).flatMap((t) => usage(t.expr).metrics))
    // System resources: CPU, memory, event loop lag, per process.
    expect([...metricsOf('system-resources.json')]).toEqual(
      expect.arrayContaining([
        'process_cpu_seconds_total',
        'process_resident_memory_bytes',
        'nodejs_eventloop_lag_p99_seconds',
        'nodejs_heap_size_used_bytes',
        'up',
      ]),
    )
    // Application performance: rate, errors and latency per function, cache hits, lock waits and
    // transaction retries, outbox lag, queue depth, dead letters.
    expect([...metricsOf('application-performance.json')]).toEqual(
      expect.arrayContaining([
        'http_request_duration_seconds_count',
        'http_request_duration_seconds_bucket',
        'cache_requests_total',
        'db_transaction_retries_total',
        'outbox_unpublished_events',
        'event_commit_to_publish_seconds_bucket',
        'rabbitmq_detailed_queue_messages_ready',
        'rabbitmq_detailed_queue_messages',
        'events_consumed_total',
      ]),
    )
    // Business: orders over time, coupons issued and refused by reason, charges.
    const business = targetsOf(load('business.json')).map((t) => t.expr)
    expect(business.some((e) => e.includes('order_requests_total') && e.includes('"placed"'))).toBe(true)
    expect(
      business.some((e) => e.includes('coupon_issue_requests_total') && e.includes('by (outcome)')),
    ).toBe(true)
    expect(business.some((e) => e.includes('/balance/charge'))).toBe(true)
  })

  it('knows the RabbitMQ metrics it allows are the family prometheus.yml scrapes per queue', () => {
    const config = parse(readFileSync(PROMETHEUS_CONFIG, 'utf8')) as { scrape_configs: Scrape[] }
    const perQueue = config.scrape_configs.filter((job) => job.params?.family)
    expect(perQueue.map((job) => job.params?.family)).toEqual([['queue_coarse_metrics']])
  })

  it.skipIf(!PROMTOOL)(`every query is valid PromQL${SKIP}`, () => {
    const dir = mkdtempSync(join(tmpdir(), 'commerce-dashboards-'))
    try {
      const rules = Object.keys(DASHBOARDS).map((file) => ({
        name: file,
        rules: targetsOf(load(file)).map((target, i) => ({
          record: `dashboard:query_${i}`,
          expr: withVariables(target.expr),
        })),
      }))
      writeFileSync(join(dir, 'queries.yml'), stringify({ groups: rules }))
      const run = spawnSync('promtool', ['check', 'rules', 'queries.yml'], { cwd: dir, encoding: 'utf8' })
      expect(run.status, `${run.stdout}${run.stderr}`).toBe(0)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
