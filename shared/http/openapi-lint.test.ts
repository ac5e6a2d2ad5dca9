import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { RuntimeDeps } from '../runtime/deps'
import { discoverFunctions } from '../runtime/discover'
import { binOf, run } from '../testing/bin'
import { call, createTestApp, createTestDeps } from '../testing/harness'

let deps: RuntimeDeps
let dir: string

beforeAll(async () => {
  deps = await createTestDeps()
  // A folder of its own: no redocly.yaml and no .redocly.lint-ignore.yaml can be picked up.
  dir = await mkdtemp(join(tmpdir(), 'openapi-lint-'))
})
afterAll(async () => {
  await deps.close()
  await rm(dir, { recursive: true, force: true })
})

type LintReport = {
  totals: { errors: number; warnings: number; ignored: number }
  problems: Array<{ ruleId: string; severity: string; message: string; location: unknown }>
}

describe('the served /openapi.json', () => {
  it("passes `redocly lint` with Redocly's recommended rules: no error, no warning, nothing ignored", async () => {
    const res = await call(createTestApp(deps, await discoverFunctions()), 'GET', '/openapi.json')
    expect(res.status).toBe(200)
    await writeFile(join(dir, 'openapi.json'), res.text)

    const lint = await run(
      binOf('redocly'),
      ['lint', 'openapi.json', '--extends=recommended', '--format=json'],
      { cwd: dir, env: { REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true', NO_COLOR: '1' } },
    )
    const report = JSON.parse(lint.stdout) as LintReport
    expect(report.problems.map((p) => `${p.severity} ${p.ruleId}: ${p.message}`)).toEqual([])
    expect(report.totals).toEqual({ errors: 0, warnings: 0, ignored: 0 })
    expect(lint.code).toBe(0)
    expect(await readdir(dir)).toEqual(['openapi.json'])
  })
})
