import { spawnSync } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { loadModel, renderPrometheus } from '../scripts/gen-infra'
import { createMetrics } from '../shared/metrics'

/** Prometheus configuration: valid for the tool itself, and about metrics that exist (dashboards: grafana.test.ts). */

const INFRA = new URL('.', import.meta.url).pathname
const PROMTOOL = spawnSync('promtool', ['--version'], { stdio: 'ignore' }).status === 0
const SKIP = PROMTOOL ? '' : ' (skipped: promtool is not installed; apt-get install -y prometheus)'

const promtool = (...args: string[]) => {
  const run = spawnSync('promtool', args, { cwd: join(INFRA, 'prometheus'), encoding: 'utf8' })
  return { status: run.status, output: `${run.stdout}${run.stderr}` }
}

/** Every metric the app exports, with the series names a histogram adds. */
async function exportedMetricNames(): Promise<Set<string>> {
  const metrics = await createMetrics().registry.getMetricsAsJSON()
  return new Set(
    metrics.flatMap((m) =>
      String(m.type) === 'histogram' ? [`${m.name}_bucket`, `${m.name}_count`, `${m.name}_sum`] : [m.name],
    ),
  )
}

const PROMQL_FUNCTIONS = new Set(['histogram_quantile', 'label_values', 'label_replace', 'absent_over_time'])

/** Metric names in a PromQL expression: identifiers outside label matchers, ranges, groupings and strings. */
function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/"[^"]*"/g, '')
    .replace(/\{[^}]*\}/g, '')
    .replace(/\[[^\]]*\]/g, '')
    .replace(/\b(by|on|without|ignoring)\s*\([^)]*\)/g, '')
  const identifiers = bare.match(/[A-Za-z_:][A-Za-z0-9_:]*/g) ?? []
  return identifiers.filter((id) => id === 'up' || (id.includes('_') && !PROMQL_FUNCTIONS.has(id)))
}

/** Metrics that come from elsewhere than shared/metrics.ts. */
const isExternal = (name: string) => name === 'up' || name.startsWith('rabbitmq_')

type Rules = { groups: Array<{ rules: Array<{ alert: string; expr: string }> }> }

describe('infra/prometheus', () => {
  it('prometheus.yml is what scripts/gen-infra.ts renders (run `npm run gen:infra`)', async () => {
    const committed = await readFile(join(INFRA, 'prometheus', 'prometheus.yml'), 'utf8')
    expect(committed).toBe(renderPrometheus(await loadModel()))
  })

  it('scrapes every function and worker by its compose service name', async () => {
    const model = await loadModel()
    const config = parse(await readFile(join(INFRA, 'prometheus', 'prometheus.yml'), 'utf8')) as {
      scrape_configs: Array<{ job_name: string; dns_sd_configs?: Array<{ names: string[] }> }>
    }
    const names = config.scrape_configs.flatMap((job) => job.dns_sd_configs?.flatMap((sd) => sd.names) ?? [])
    expect(names.sort()).toEqual([...model.functions.map((fn) => fn.name), ...model.workers].sort())
  })

  it('alerts.yml only uses metrics the app exports', async () => {
    const known = await exportedMetricNames()
    const rules = parse(await readFile(join(INFRA, 'prometheus', 'alerts.yml'), 'utf8')) as Rules
    const used = new Set(
      rules.groups.flatMap((group) => group.rules).flatMap((rule) => metricNames(rule.expr)),
    )
    expect([...used].sort()).toEqual(
      expect.arrayContaining([
        'events_consumed_total',
        'http_request_duration_seconds_bucket',
        'http_request_duration_seconds_count',
        'outbox_unpublished_events',
        'up',
      ]),
    )
    const unknown = rules.groups
      .flatMap((group) => group.rules)
      .flatMap((rule) => metricNames(rule.expr).map((name) => `${rule.alert}: ${name}`))
      .filter((entry) => {
        const name = entry.split(': ')[1] as string
        return !isExternal(name) && !known.has(name)
      })
    expect(unknown).toEqual([])
  })

  it.skipIf(!PROMTOOL)(`promtool accepts prometheus.yml and alerts.yml${SKIP}`, () => {
    const config = promtool('check', 'config', 'prometheus.yml')
    expect(config.status, config.output).toBe(0)
    const rules = promtool('check', 'rules', 'alerts.yml')
    expect(rules.status, rules.output).toBe(0)
  })

  it.skipIf(!PROMTOOL)(`the alerts fire as alerts.test.yml expects${SKIP}`, () => {
    const result = promtool('test', 'rules', 'alerts.test.yml')
    expect(result.status, result.output).toBe(0)
  })
})
