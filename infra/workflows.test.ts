import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { parseDocument } from 'yaml'
import { entryNames } from '../shared/runtime/discover'

/**
 * The GitHub Actions workflows parse, CI runs the README's test command after starting the services the
 * tests use, and deploy builds an image per function from Dockerfile targets that exist, tagged with the
 * commit, then migrates and rolls the production overlay.
 */

const ROOT = new URL('..', import.meta.url).pathname

type Step = {
  name?: string
  uses?: string
  run?: string
  with?: Record<string, unknown>
  env?: Record<string, string>
}
type Job = {
  'runs-on': string
  needs?: string | string[]
  if?: string
  steps: Step[]
  strategy?: { matrix: Record<string, unknown> }
}
type Workflow = { name: string; on: Record<string, unknown>; jobs: Record<string, Job> }

function workflow(file: string): Workflow {
  const doc = parseDocument(readFileSync(join(ROOT, '.github', 'workflows', file), 'utf8'))
  expect(doc.errors.map((e) => e.message)).toEqual([])
  const parsed = doc.toJS() as Workflow
  expect(typeof parsed.name).toBe('string')
  expect(Object.keys(parsed.on).length).toBeGreaterThan(0)
  for (const [name, job] of Object.entries(parsed.jobs)) {
    expect(job['runs-on'], name).toMatch(/^ubuntu-/)
    for (const step of job.steps) {
      expect(Boolean(step.uses) !== Boolean(step.run), `${name}: a step either uses an action or runs`).toBe(
        true,
      )
      // Actions by a major version tag at least, never a moving branch.
      if (step.uses) expect(step.uses).toMatch(/^[\w-]+\/[\w-]+@v\d+$/)
    }
  }
  return parsed
}

/** The command under "## Test it" in the README: the one way to run the tests. */
function readmeTestCommand(): string {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8')
  const section = readme.slice(readme.indexOf('## Test it'))
  const command = section.match(/```sh\n([^\n]+)\n```/)?.[1]
  if (!command) throw new Error('README.md: no sh block under "## Test it"')
  return command
}

/** A GitHub Actions expression as it appears in the workflow: gh('matrix.unit') is "$" + "{{ matrix.unit }}". */
const gh = (inner: string) => ['$', '{{ ', inner, ' }}'].join('')

const runs = (job: Job) => job.steps.flatMap((step) => (step.run ? [step.run] : []))

describe('.github/workflows/ci.yml', () => {
  const ci = workflow('ci.yml')
  const [job, ...others] = Object.values(ci.jobs) as [Job, ...Job[]]

  it('runs the README test command on pushes to main and on pull requests', () => {
    expect(others).toEqual([])
    expect(Object.keys(ci.on).sort()).toEqual(['pull_request', 'push'])
    const command = readmeTestCommand()
    expect(command).toBe('npm test')
    expect(runs(job)).toContain(command)
  })

  it('starts the same services first, with the Node the project declares, from a clean install', () => {
    const steps = runs(job)
    const at = (text: string) => steps.findIndex((run) => run.includes(text))
    expect(at('scripts/dev-services.sh')).toBeGreaterThanOrEqual(0)
    expect(existsSync(join(ROOT, 'scripts', 'dev-services.sh'))).toBe(true)
    expect(at('npm ci')).toBeGreaterThan(at('scripts/dev-services.sh'))
    expect(at(readmeTestCommand())).toBeGreaterThan(at('npm ci'))
    const node = job.steps.find((step) => step.uses?.startsWith('actions/setup-node@'))
    const engines = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).engines.node as string
    expect(engines).toBe(`>=${node?.with?.['node-version']}`)
  })
})

describe('.github/workflows/deploy.yml', () => {
  const deploy = workflow('deploy.yml')
  const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8')
  const targets = [...dockerfile.matchAll(/^FROM \S+ AS (\S+)$/gm)].map((m) => m[1])

  it('deploys after CI succeeds on main, or on demand for a rollback', () => {
    expect(deploy.on.workflow_run).toEqual({
      workflows: [workflowName('ci.yml')],
      types: ['completed'],
      branches: ['main'],
    })
    expect(deploy.on).toHaveProperty('workflow_dispatch.inputs.ref')
    expect(deploy.jobs.plan?.if).toContain("conclusion == 'success'")
  })

  it('builds one image per function and worker, tagged by commit, from Dockerfile targets that exist', () => {
    const images = deploy.jobs.images as Job
    const build = images.steps.find((step) => step.uses?.startsWith('docker/build-push-action@')) as Step
    expect(build.with).toMatchObject({
      target: 'function',
      'build-args': `FUNCTION=${gh('matrix.unit')}`,
      push: true,
      tags: `${gh('env.REGISTRY')}/commerce-${gh('matrix.unit')}:${gh('needs.plan.outputs.sha')}`,
    })
    expect(images.strategy?.matrix.unit).toBe(gh('fromJSON(needs.plan.outputs.units)'))
    // The plan lists the same units npm run build bundles: the folders of functions/ with an index.ts.
    const plan = runs(deploy.jobs.plan as Job).join('\n')
    expect(plan).toContain('ls functions/*/index.ts')
    expect(entryNames().length).toBeGreaterThan(10)
    const support = deploy.jobs['support-images'] as Job
    expect(support.strategy?.matrix.target).toEqual(['migrate', 'backup'])
    for (const target of ['function', 'migrate', 'backup', 'runtime']) expect(targets).toContain(target)
    // The default target (the last stage) stays the all-in-one image of docker-compose.yml.
    expect(targets.at(-1)).toBe('runtime')
  })

  it('migrates before it rolls the production overlay and waits for every rollout', () => {
    const job = deploy.jobs.deploy as Job
    expect(job.needs).toEqual(['plan', 'images', 'support-images'])
    expect(job.if).toContain("needs.plan.result == 'success'")
    const script = runs(job).join('\n')
    expect(script).toContain('resources: [infra/k8s/overlays/production]')
    expect(existsSync(join(ROOT, 'infra', 'k8s', 'overlays', 'production', 'kustomization.yaml'))).toBe(true)
    const migrate = script.indexOf('--from=cronjob/migrate')
    const wait = script.indexOf('--for=condition=complete')
    const roll = script.indexOf('kubectl apply -f "$RUNNER_TEMP/release.yaml"\n')
    expect(migrate).toBeGreaterThan(0)
    expect(wait).toBeGreaterThan(migrate)
    expect(roll).toBeGreaterThan(wait)
    expect(script).toContain('rollout status "deployment/$unit"')
    // Credentials come from the environment's secret, never from the repository.
    expect(readFileSync(join(ROOT, '.github', 'workflows', 'deploy.yml'), 'utf8')).toContain(
      gh('secrets.KUBECONFIG'),
    )
  })
})

function workflowName(file: string) {
  return workflow(file).name
}
