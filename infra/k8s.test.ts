import { spawnSync } from 'node:child_process'
import { readdirSync, statSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join, relative } from 'node:path'
import {
  type IScaledObject,
  type ITriggerAuthentication,
  ScaledObject,
  TriggerAuthentication,
} from '@kubernetes-models/keda/keda.sh/v1alpha1'
import {
  type IServiceMonitor,
  ServiceMonitor,
} from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1'
import { Deployment, type IDeployment } from 'kubernetes-models/apps/v1'
import { HorizontalPodAutoscaler, type IHorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2'
import { CronJob, type ICronJob } from 'kubernetes-models/batch/v1'
import {
  type IIngress,
  type INetworkPolicy,
  Ingress,
  NetworkPolicy,
} from 'kubernetes-models/networking.k8s.io/v1'
import { type IPodDisruptionBudget, PodDisruptionBudget } from 'kubernetes-models/policy/v1'
import {
  ConfigMap,
  type IConfigMap,
  type IPodSpec,
  type IService,
  Namespace,
  PersistentVolumeClaim,
  Service,
} from 'kubernetes-models/v1'
import { beforeAll, describe, expect, it } from 'vitest'
import { parseAllDocuments } from 'yaml'
import { ConnectionBudgetError, connectionBudget, MARIADB_LIMITS } from '../scripts/connection-budget'
import { type InfraModel, loadModel } from '../scripts/gen-infra'
import {
  DATA_STORES,
  deploymentPlan,
  ingressPath,
  KEDA,
  kubernetesBudget,
  MYSQL_PASSWORD_VARIABLE,
  NAMESPACE,
  PRE_STOP_SECONDS,
  PROXY,
  proxyUrl,
  renderKubernetes,
  SECRET_KEYS,
  SMALL_SCALING,
  type UnitPlan,
} from '../scripts/infra/k8s'
import { PROXYSQL_PORTS, renderProxySqlCnf } from '../scripts/infra/proxysql'
import { ENV_VARS } from '../shared/config'
import { eventTopology } from '../shared/events/topology'
import { createMetrics } from '../shared/metrics'
import { SHUTDOWN_DEADLINE_MS } from '../shared/runtime/server'

/**
 * infra/k8s, rendered by kustomize as an operator would (`kubectl kustomize`, offline), each manifest
 * validated against the Kubernetes, KEDA and prometheus-operator schemas (kubernetes-models), and held
 * to what the issue asks of every function: its Deployment, Service, HPA, PDB, ServiceMonitor and route.
 */

const ROOT = new URL('..', import.meta.url).pathname
const K8S = join(ROOT, 'infra', 'k8s')

/** What every manifest has; the rest is read through the kind's own type once the schemas passed it. */
type Manifest = {
  apiVersion: string
  kind: string
  metadata: { name: string; namespace?: string }
}
type Kinds = {
  Deployment: IDeployment
  Service: IService
  HorizontalPodAutoscaler: IHorizontalPodAutoscaler
  PodDisruptionBudget: IPodDisruptionBudget
  ServiceMonitor: IServiceMonitor
  ScaledObject: IScaledObject
  TriggerAuthentication: ITriggerAuthentication
  Ingress: IIngress
  NetworkPolicy: INetworkPolicy
  CronJob: ICronJob
  ConfigMap: IConfigMap
  PersistentVolumeClaim: { spec?: unknown }
}

const must = <T>(value: T | undefined | null, what: string): T => {
  if (value === undefined || value === null) throw new Error(`missing: ${what}`)
  return value
}

/** apiVersion/kind → the kubernetes-models class that validates it. Every kind we render must be here. */
const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  'v1/Namespace': Namespace,
  'v1/ConfigMap': ConfigMap,
  'v1/Service': Service,
  'v1/PersistentVolumeClaim': PersistentVolumeClaim,
  'apps/v1/Deployment': Deployment,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'batch/v1/CronJob': CronJob,
  'networking.k8s.io/v1/Ingress': Ingress,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
  'monitoring.coreos.com/v1/ServiceMonitor': ServiceMonitor,
  'keda.sh/v1alpha1/ScaledObject': ScaledObject,
  'keda.sh/v1alpha1/TriggerAuthentication': TriggerAuthentication,
}

const parseYaml = (text: string): Manifest[] =>
  parseAllDocuments(text).map((doc) => {
    if (doc.errors.length > 0) throw new Error(doc.errors.map((e) => e.message).join('; '))
    return doc.toJS() as Manifest
  })

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name)
    return statSync(path).isDirectory() ? filesUnder(path) : [path]
  })
}

const KUBECTL = spawnSync('kubectl', ['version', '--client'], { stdio: 'ignore' }).status === 0
const SKIP_KUBECTL = KUBECTL
  ? ''
  : ' (skipped: kubectl is not installed, so kustomize cannot render the overlays)'

function kustomize(overlay: string): Manifest[] {
  const run = spawnSync('kubectl', ['kustomize', join(K8S, 'overlays', overlay)], {
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  })
  if (run.status !== 0) throw new Error(`kubectl kustomize ${overlay} failed:\n${run.stderr}`)
  return parseYaml(run.stdout)
}

let model: InfraModel
let plan: UnitPlan[]
let baseManifests: Manifest[]

beforeAll(async () => {
  model = await loadModel()
  plan = deploymentPlan(model)
  const base = filesUnder(join(K8S, 'base')).filter((path) => !path.endsWith('kustomization.yaml'))
  const keda = join(K8S, 'components', 'keda', 'scaled-objects.yaml')
  baseManifests = (await Promise.all([...base, keda].map((path) => readFile(path, 'utf8')))).flatMap(
    parseYaml,
  )
})

const byKind = <K extends keyof Kinds>(manifests: Manifest[], kind: K) =>
  manifests.filter((m) => m.kind === kind) as unknown as Array<Kinds[K] & Manifest>
const find = <K extends keyof Kinds>(manifests: Manifest[], kind: K, name: string) =>
  byKind(manifests, kind).find((m) => m.metadata.name === name)
const named = <K extends keyof Kinds>(manifests: Manifest[], kind: K, name: string) =>
  must(find(manifests, kind, name), `${kind} ${name}`)
const podSpecs = (manifests: Manifest[]): Array<{ owner: string; spec: IPodSpec }> => [
  ...byKind(manifests, 'Deployment').map((d) => ({
    owner: d.metadata.name,
    spec: must(d.spec?.template.spec, d.metadata.name),
  })),
  ...byKind(manifests, 'CronJob').map((c) => ({
    owner: c.metadata.name,
    spec: must(c.spec?.jobTemplate.spec?.template.spec, c.metadata.name),
  })),
]

function validateAll(manifests: Manifest[]) {
  const failures: string[] = []
  for (const manifest of manifests) {
    const Model = MODELS[`${manifest.apiVersion}/${manifest.kind}`]
    if (!Model) {
      failures.push(
        `${manifest.apiVersion} ${manifest.kind} ${manifest.metadata.name}: no schema to check it with`,
      )
      continue
    }
    try {
      new Model(manifest as never).validate()
    } catch (error) {
      failures.push(`${manifest.kind} ${manifest.metadata.name}: ${(error as Error).message}`)
    }
  }
  expect(failures).toEqual([])
}

describe('infra/k8s files', () => {
  it('are what scripts/infra/k8s.ts renders from functions/, and nothing else (run `npm run gen:infra`)', async () => {
    const rendered = renderKubernetes(model)
    const onDisk = filesUnder(K8S).map((path) => relative(ROOT, path))
    expect(onDisk.sort()).toEqual(Object.keys(rendered).sort())
    for (const [path, content] of Object.entries(rendered)) {
      expect(await readFile(join(ROOT, path), 'utf8'), path).toBe(content)
    }
  })

  it('validate against the Kubernetes, KEDA and prometheus-operator schemas as written', () => {
    expect(baseManifests.length).toBeGreaterThan(5 * plan.length)
    validateAll(baseManifests)
  })

  it('the schema check catches a wrong type, so the passes above mean something', () => {
    const deployment = structuredClone(named(baseManifests, 'Deployment', 'order-create'))
    const port = must(deployment.spec?.template.spec?.containers[0]?.ports?.[0], 'port')
    Object.assign(port, { containerPort: 'eighty' })
    expect(() => new Deployment(deployment).validate()).toThrow(/containerPort/)
  })
})

describe.each(['small', 'production'])('the %s overlay, rendered by kustomize', (overlay) => {
  let manifests: Manifest[]
  beforeAll(() => {
    if (KUBECTL) manifests = kustomize(overlay)
  })

  it.skipIf(!KUBECTL)(`validates, every manifest in namespace ${NAMESPACE}${SKIP_KUBECTL}`, () => {
    validateAll(manifests)
    for (const m of manifests.filter((m) => m.kind !== 'Namespace')) {
      expect(`${m.kind}/${m.metadata.name} in ${m.metadata.namespace}`).toBe(
        `${m.kind}/${m.metadata.name} in ${NAMESPACE}`,
      )
    }
    expect(
      manifests.filter((m) => m.kind === 'Secret'),
      'no Secret may be committed',
    ).toEqual([])
  })

  it.skipIf(!KUBECTL)(
    `gives every function and worker its Deployment, Service, PDB and ServiceMonitor${SKIP_KUBECTL}`,
    () => {
      const selector = (name: string) => ({ 'app.kubernetes.io/name': name })
      for (const unit of plan) {
        named(manifests, 'Deployment', unit.name)
        expect(named(manifests, 'Service', unit.name).spec?.selector).toEqual(selector(unit.name))
        expect(named(manifests, 'PodDisruptionBudget', unit.name).spec).toMatchObject({
          maxUnavailable: 1,
          selector: { matchLabels: selector(unit.name) },
        })
        expect(named(manifests, 'ServiceMonitor', unit.name).spec).toMatchObject({
          selector: { matchLabels: selector(unit.name) },
          endpoints: [expect.objectContaining({ port: 'http', path: '/metrics' })],
        })
      }
      const units = appDeployments(manifests).map((m) => m.metadata.name)
      expect(units.sort()).toEqual(plan.map((u) => u.name).sort())
      // Besides them, only the connection proxy.
      expect(
        byKind(manifests, 'Deployment')
          .map((m) => m.metadata.name)
          .sort(),
      ).toEqual([...units, PROXY.name].sort())
    },
  )

  it.skipIf(!KUBECTL)(`scales every unit by one autoscaler, with the plan's bounds${SKIP_KUBECTL}`, () => {
    for (const unit of plan) {
      const hpa = find(manifests, 'HorizontalPodAutoscaler', unit.name)
      const scaled = find(manifests, 'ScaledObject', unit.name)
      // KEDA makes its own HPA from a ScaledObject: a unit has one or the other, never both.
      expect(Boolean(hpa) !== Boolean(scaled), `${unit.name}: one autoscaler`).toBe(true)
      const expected = overlay === 'small' ? SMALL_SCALING : unit.production
      if (hpa) {
        expect(hpa.spec).toMatchObject({
          scaleTargetRef: { kind: 'Deployment', name: unit.name },
          minReplicas: expected.minReplicas,
          maxReplicas: expected.maxReplicas,
        })
      } else {
        expect(scaled?.spec).toMatchObject({
          scaleTargetRef: { name: unit.name },
          minReplicaCount: expected.minReplicas,
          maxReplicaCount: expected.maxReplicas,
        })
      }
    }
    // Without KEDA (small), the workers fall back to the CPU HPA; with it (production), they scale on backlog.
    const workers = plan.filter((u) => u.component === 'worker').map((u) => u.name)
    expect(workers.sort()).toEqual(['outbox-relay', 'stats-consumer'])
    for (const worker of workers) {
      named(manifests, overlay === 'small' ? 'HorizontalPodAutoscaler' : 'ScaledObject', worker)
    }
  })

  it.skipIf(!KUBECTL)(
    `sets only environment variables the code reads, with secrets from the Secret${SKIP_KUBECTL}`,
    () => {
      const secretNames = [
        MYSQL_PASSWORD_VARIABLE,
        'REDIS_URL',
        'RABBITMQ_URL',
        'JWT_SECRET',
        'JWT_SECRET_PREVIOUS',
      ]
      const databaseUrls = ['DATABASE_URL', 'DATABASE_REPLICA_URL']
      const pods = podSpecs(manifests).filter(({ owner }) => owner !== PROXY.name)
      expect(pods.length).toBe(plan.length + 2)
      for (const { owner, spec } of pods) {
        for (const container of [...(spec.initContainers ?? []), ...spec.containers]) {
          expect(container.envFrom, `${owner}: envFrom hides which variables are set`).toBeUndefined()
          const names = (container.env ?? []).map((env) => env.name)
          for (const env of container.env ?? []) {
            // MYSQL_PASSWORD is read by Kubernetes, to compose the database URLs; the code never sees it.
            expect([...ENV_VARS, MYSQL_PASSWORD_VARIABLE], `${owner} sets ${env.name}`).toContain(env.name)
            if (secretNames.includes(env.name)) {
              expect(
                env.valueFrom?.secretKeyRef,
                `${owner}: ${env.name} must come from a Secret`,
              ).toBeDefined()
              expect(env.value).toBeUndefined()
            }
            if (databaseUrls.includes(env.name) && env.value !== undefined) {
              // Composed from the Secret's password (defined before it), with nothing secret written here.
              expect(env.value, owner).toMatch(
                /^mysql:\/\/commerce:\$\(MYSQL_PASSWORD\)@[\w-]+:\d+\/commerce$/,
              )
              expect(names.indexOf(MYSQL_PASSWORD_VARIABLE), owner).toBeGreaterThanOrEqual(0)
              expect(names.indexOf(MYSQL_PASSWORD_VARIABLE), owner).toBeLessThan(names.indexOf(env.name))
            } else if (databaseUrls.includes(env.name)) {
              expect(
                env.valueFrom?.secretKeyRef,
                `${owner}: ${env.name} must come from a Secret`,
              ).toBeDefined()
            }
          }
        }
      }
      const proxyPod = must(
        podSpecs(manifests).find(({ owner }) => owner === PROXY.name),
        'proxy pod',
      )
      for (const env of proxyPod.spec.containers.flatMap((container) => container.env ?? [])) {
        expect(env.valueFrom?.secretKeyRef, `proxy: ${env.name}`).toBeDefined()
      }
      const secretRefs = podSpecs(manifests).flatMap(({ spec }) =>
        spec.containers.flatMap((c) => (c.env ?? []).flatMap((e) => e.valueFrom?.secretKeyRef?.key ?? [])),
      )
      expect([...new Set(secretRefs)].sort()).toEqual([...SECRET_KEYS].sort())
      for (const configMap of byKind(manifests, 'ConfigMap').filter(
        (c) => c.metadata.name === 'commerce-config',
      )) {
        for (const key of Object.keys(configMap.data ?? {})) expect(ENV_VARS).toContain(key)
        for (const key of secretNames) expect(configMap.data ?? {}).not.toHaveProperty(key)
      }
    },
  )

  it.skipIf(!KUBECTL)(`runs pods that roll safely, drain and stay locked down${SKIP_KUBECTL}`, () => {
    const entries = plan.map((u) => u.name)
    const proxy = named(manifests, 'Deployment', PROXY.name)
    expect(proxy.spec).toMatchObject({
      // Fixed: the connection budget counts every proxy pod, the one a rollout adds included.
      replicas: PROXY.replicas,
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: PROXY.surge } },
    })
    expect(find(manifests, 'HorizontalPodAutoscaler', PROXY.name)).toBeUndefined()
    const proxyPod = must(proxy.spec?.template.spec, 'proxy pod')
    expect(proxyPod.securityContext?.runAsNonRoot).toBe(true)
    expect(proxyPod.containers[0]?.securityContext).toMatchObject({
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
    })
    for (const deployment of appDeployments(manifests)) {
      const name = deployment.metadata.name
      const spec = must(deployment.spec, name)
      expect(spec.replicas, `${name}: the autoscaler owns replicas`).toBeUndefined()
      expect(spec.strategy).toMatchObject({ type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0 } })
      const pod = must(spec.template.spec, name)
      expect(pod.containers).toHaveLength(1)
      const container = must(pod.containers[0], name)
      expect(container.args).toEqual([name])
      expect(entries).toContain(name)
      expect(container.readinessProbe?.httpGet).toEqual({ path: '/health/ready', port: 'http' })
      expect(container.livenessProbe?.httpGet).toEqual({ path: '/health/live', port: 'http' })
      expect(container.ports).toEqual([expect.objectContaining({ name: 'http', containerPort: 8080 })])
      // preStop keeps serving while endpoints drain; then SIGTERM starts the 10 s graceful shutdown.
      expect(container.lifecycle?.preStop?.exec?.command).toEqual(['sleep', String(PRE_STOP_SECONDS)])
      expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(
        PRE_STOP_SECONDS + SHUTDOWN_DEADLINE_MS / 1000,
      )
      const resource = { cpu: expect.any(String), memory: expect.any(String) }
      expect(container.resources).toMatchObject({ requests: resource, limits: resource })
      expect(pod.topologySpreadConstraints?.map((c) => c.topologyKey)).toContain(
        'topology.kubernetes.io/zone',
      )
      expect(pod.securityContext?.runAsNonRoot).toBe(true)
      expect(pod.securityContext?.runAsUser).toBeGreaterThan(0)
      expect(container.securityContext).toMatchObject({
        readOnlyRootFilesystem: true,
        allowPrivilegeEscalation: false,
        capabilities: { drop: ['ALL'] },
      })
      expect(pod.automountServiceAccountToken).toBe(false)
    }
  })

  it.skipIf(!KUBECTL)(
    `routes every function through the Ingress with TLS, and nothing else${SKIP_KUBECTL}`,
    () => {
      const ingresses = byKind(manifests, 'Ingress')
      expect(ingresses).toHaveLength(1)
      const ingress = must(ingresses[0], 'Ingress')
      expect(ingress.spec?.ingressClassName).toBe('nginx')
      expect(ingress.spec?.tls).toEqual([{ hosts: [expect.any(String)], secretName: expect.any(String) }])
      const paths = ingressPaths(ingress)
      for (const path of paths) {
        // The API server refuses a path that does not start with /.
        expect(path.path?.startsWith('/v1/'), path.path).toBe(true)
        named(manifests, 'Service', must(path.backend.service, 'service').name)
      }
      expect(paths.map((p) => p.backend.service?.name).sort()).toEqual(
        model.functions.map((f) => f.name).sort(),
      )
    },
  )
})

/** The Deployments of functions and workers (the proxy is the only other one). */
const appDeployments = (manifests: Manifest[]) =>
  byKind(manifests, 'Deployment').filter((d) =>
    ['function', 'worker'].includes(
      (d.metadata as { labels?: Record<string, string> }).labels?.['app.kubernetes.io/component'] ?? '',
    ),
  )

const ingressPaths = (ingress: IIngress) =>
  (ingress.spec?.rules ?? []).flatMap((rule) => rule.http?.paths ?? [])

/** Which function a request path reaches, the way nginx picks a location: exact match, then regexes in order. */
function nginxRoute(conf: string, path: string): string | undefined {
  const locations: Array<{ exact?: string; regex?: RegExp; names: string[] }> = []
  for (const line of conf.split('\n')) {
    const location = line.match(/^\s*location (?:= (\S+)|~ "(.+)") \{/)
    if (location) {
      locations.push({
        ...(location[1] ? { exact: location[1] } : {}),
        ...(location[2] ? { regex: new RegExp(location[2]) } : {}),
        names: [],
      })
      continue
    }
    const upstream = line.match(/proxy_pass http:\/\/([\w-]+);|set \$function ([\w-]+);/)
    const current = locations.at(-1)
    if (upstream && current) current.names.push((upstream[1] ?? upstream[2]) as string)
  }
  const found = locations.find((l) => l.exact === path) ?? locations.find((l) => l.regex?.test(path))
  return found?.names.join(',')
}

/** ingress-nginx: regex paths, case-insensitive, longest first (its documented ordering). */
function ingressRoute(ingress: IIngress, path: string): string | undefined {
  const ordered = ingressPaths(ingress).sort((a, b) => (b.path ?? '').length - (a.path ?? '').length)
  return ordered.find((p) => new RegExp(`^${p.path}`, 'i').test(path))?.backend.service?.name
}

describe('the Ingress and infra/nginx', () => {
  it('send every route to the same function', async () => {
    const conf = await readFile(join(ROOT, 'infra', 'nginx', 'nginx.conf'), 'utf8')
    const ingress = named(baseManifests, 'Ingress', 'commerce')
    for (const fn of model.functions) {
      const example = fn.route.path.replace(/:\w+/g, '12345')
      expect({ path: example, nginx: nginxRoute(conf, example) }).toEqual({ path: example, nginx: fn.name })
      expect({ path: example, ingress: ingressRoute(ingress, example) }).toEqual({
        path: example,
        ingress: fn.name,
      })
    }
    for (const unrouted of ['/metrics', '/health/ready', '/v1/nope', '/openapi.json']) {
      expect(ingressRoute(ingress, unrouted), unrouted).toBeUndefined()
    }
  })

  it('refuses routes that ingress-nginx could not tell apart', () => {
    const fn = (name: string, method: string, path: string) => ({ name, route: { method, path } })
    const render =
      (...functions: Array<ReturnType<typeof fn>>) =>
      () =>
        renderKubernetes({ functions, workers: ['outbox-relay', 'stats-consumer'] })
    expect(render(fn('a', 'GET', '/v1/things/:id'), fn('b', 'PATCH', '/v1/things/:thingId'))).toThrow(
      /share a path/,
    )
    // "/v1/x/ab" is shorter than "/v1/x/[^/]+", so ingress-nginx would try the parameter first.
    expect(render(fn('a', 'GET', '/v1/x/ab'), fn('b', 'GET', '/v1/x/:id'))).toThrow(/shadow/)
    expect(render(fn('a', 'GET', '/v1/x/popular'), fn('b', 'GET', '/v1/x/:id'))).not.toThrow()
    expect(ingressPath('/v1/orders/:orderId/cancel')).toBe('/v1/orders/[^/]+/cancel$')
  })
})

const componentsOf = (spec: INetworkPolicy['spec']) =>
  spec?.podSelector?.matchExpressions?.find((e) => e.key === 'app.kubernetes.io/component')?.values

describe('NetworkPolicies', () => {
  it('deny by default, let only functions and workers reach Redis and RabbitMQ, and MySQL only through the proxy', () => {
    const policies = byKind(baseManifests, 'NetworkPolicy')
    expect(named(baseManifests, 'NetworkPolicy', 'default-deny-ingress').spec).toEqual({
      policyTypes: ['Ingress'],
      podSelector: {},
    })
    const clientsOf = (name: string) => {
      const policy = must(
        policies.find((p) => p.spec?.podSelector?.matchLabels?.['app.kubernetes.io/name'] === name),
        name,
      )
      const appRule = must(policy.spec?.ingress?.[0], name)
      const clients = appRule.from?.[0]?.podSelector?.matchExpressions?.[0]
      expect(clients?.key).toBe('app.kubernetes.io/component')
      return { clients: [...(clients?.values ?? [])].sort(), ports: appRule.ports }
    }
    for (const store of ['redis', 'rabbitmq']) {
      expect(clientsOf(store)).toEqual({
        clients: ['function', 'worker'],
        ports: [{ port: DATA_STORES.find((s) => s.name === store)?.port, protocol: 'TCP' }],
      })
    }
    // Functions and workers cannot bypass the proxy, so MariaDB sees what the connection budget counts.
    expect(clientsOf('mysql')).toEqual({
      clients: ['backup', 'migrate', 'proxy'],
      ports: [{ port: 3306, protocol: 'TCP' }],
    })
    expect(clientsOf(PROXY.name)).toEqual({
      clients: ['function', 'worker'],
      ports: [
        { port: PROXYSQL_PORTS.primary, protocol: 'TCP' },
        { port: PROXYSQL_PORTS.replica, protocol: 'TCP' },
      ],
    })
  })

  it('let only Prometheus and the ingress controller reach the pods, and only the ingress reaches functions', () => {
    const appPolicies = byKind(baseManifests, 'NetworkPolicy').filter((p) => componentsOf(p.spec))
    const sources = appPolicies.flatMap((p) =>
      (p.spec?.ingress ?? []).flatMap((rule) =>
        (rule.from ?? []).map((from) => from.namespaceSelector?.matchLabels?.['kubernetes.io/metadata.name']),
      ),
    )
    expect(sources.sort()).toEqual(['ingress-nginx', 'monitoring'])
    expect(componentsOf(named(baseManifests, 'NetworkPolicy', 'functions-from-ingress').spec)).toEqual([
      'function',
    ])
  })
})

describe('KEDA', () => {
  it('scales the statistics consumer on the queues it reads and the relay on a metric the code exports', () => {
    const consumer = named(baseManifests, 'ScaledObject', 'stats-consumer')
    const topology = eventTopology()
    const triggers = consumer.spec.triggers
    expect(triggers.map((t) => [t.type, t.metadata.queueName, t.metadata.mode])).toEqual([
      ['rabbitmq', topology.queues.orderCompleted, 'QueueLength'],
      ['rabbitmq', topology.queues.orderCancelled, 'QueueLength'],
    ])
    const authName = must(triggers[0]?.authenticationRef?.name, 'authenticationRef')
    expect(named(baseManifests, 'TriggerAuthentication', authName).spec.secretTargetRef).toEqual([
      { parameter: 'host', name: 'commerce-secrets', key: 'RABBITMQ_URL' },
    ])

    const relay = named(baseManifests, 'ScaledObject', 'outbox-relay')
    const trigger = must(relay.spec.triggers[0], 'relay trigger')
    expect(trigger).toMatchObject({
      type: 'prometheus',
      metadata: { threshold: String(KEDA.outboxLagPerPod) },
    })
    const metric = must(trigger.metadata.query?.match(/\(([a-z_]+)\{/)?.[1], 'metric in the query')
    expect(
      createMetrics().registry.getSingleMetric(metric),
      `${metric} is not in shared/metrics.ts`,
    ).toBeDefined()
    for (const scaled of [consumer, relay]) {
      expect(scaled.spec.fallback?.replicas).toBeGreaterThanOrEqual(1)
    }
  })
})

describe('backups and migrations', () => {
  it('run the daily backup with retention onto its own volume, and migrations only when CD asks', () => {
    const backup = named(baseManifests, 'CronJob', 'db-backup')
    expect(backup.spec?.schedule).toMatch(/^\d+ \d+ \* \* \*$/)
    expect(backup.spec?.concurrencyPolicy).toBe('Forbid')
    const pod = must(backup.spec?.jobTemplate.spec?.template.spec, 'backup pod')
    expect(pod.containers[0]?.args).toEqual(expect.arrayContaining(['--root', '/backups', '--keep-days']))
    const claim = must(pod.volumes?.find((v) => v.persistentVolumeClaim)?.persistentVolumeClaim, 'claim')
    named(baseManifests, 'PersistentVolumeClaim', claim.claimName)
    expect(named(baseManifests, 'CronJob', 'migrate').spec?.suspend).toBe(true)
  })
})

describe('the connection budget', () => {
  it('sends every function and worker to the proxy, which runs the same configuration as Compose', () => {
    for (const deployment of appDeployments(baseManifests)) {
      const env = must(deployment.spec?.template.spec?.containers[0]?.env, deployment.metadata.name)
      const value = (name: string) => env.find((e) => e.name === name)?.value
      expect(value('DATABASE_URL')).toBe(proxyUrl(PROXYSQL_PORTS.primary))
      expect(value('DATABASE_REPLICA_URL')).toBe(proxyUrl(PROXYSQL_PORTS.replica))
    }
    const service = named(baseManifests, 'Service', PROXY.name)
    expect(service.spec?.selector).toEqual({ 'app.kubernetes.io/name': PROXY.name })
    expect(service.spec?.ports?.map((p) => p.port)).toEqual([PROXYSQL_PORTS.primary, PROXYSQL_PORTS.replica])
    const config = named(baseManifests, 'ConfigMap', `${PROXY.name}-config`)
    expect(config.data?.['proxysql.cnf.in']).toBe(renderProxySqlCnf())
    const backends = [...renderProxySqlCnf().matchAll(/hostgroup=(\d+), max_connections=(\d+)/g)].map(
      ([, group, n]) => [group, Number(n)],
    )
    expect(backends).toEqual([
      ['10', PROXY.backend.primary],
      ['20', PROXY.backend.replica],
    ])
  })

  it('needs the proxy: at maxReplicas the pods alone could hold more than one MariaDB admits', () => {
    const budget = kubernetesBudget(plan)
    const direct = plan.map((u) => ({
      name: u.name,
      instances: u.production.maxReplicas,
      surge: u.surge,
      poolSize: u.pools.mysqlPrimary,
      replicaPoolSize: u.pools.mysqlReplica,
    }))
    expect(() => connectionBudget(direct, MARIADB_LIMITS)).toThrow(ConnectionBudgetError)
    expect(budget.clients.primary).toBe(
      plan.reduce((sum, u) => sum + (u.production.maxReplicas + u.surge) * u.pools.mysqlPrimary, 0),
    )
    expect(budget.clients.primary + budget.clients.replica).toBeLessThanOrEqual(PROXY.clients)
    // MariaDB's side: every proxy pod at its backend limit (two, and one more while they roll), plus the
    // migration and the backup, plus headroom.
    expect(budget.mariadb.primary).toBe((PROXY.replicas + PROXY.surge) * PROXY.backend.primary + 2)
    expect(budget.mariadb.replica).toBe((PROXY.replicas + PROXY.surge) * PROXY.backend.replica)
    expect(budget.mariadb.maxConnections).toBe(budget.mariadb.primary + MARIADB_LIMITS.headroom)
    expect(budget.mariadb.maxConnections).toBeLessThanOrEqual(MARIADB_LIMITS.ceiling)
  })

  it('tells the operator the max_connections MariaDB needs', async () => {
    const header = (await readFile(join(K8S, 'base', 'mysql-proxy.yaml'), 'utf8')).split('\n')[1]
    expect(header).toContain(`max_connections = ${kubernetesBudget(plan).mariadb.maxConnections} or more`)
  })

  it('refuses to render a topology over the budget, on the MariaDB side and on the proxy side', () => {
    // Five proxy pods (six while one rolls) at 100 backend connections each: 602 with the direct clients.
    expect(() => renderKubernetes(model, { ...PROXY, replicas: 5 })).toThrow(ConnectionBudgetError)
    expect(() => renderKubernetes(model, { ...PROXY, replicas: 5 })).toThrow(
      /up to 602 connections to the primary, but a server may have 500 \(max_connections\) less 20 of headroom = 480\. Largest: mysql-proxy 6 × 100 = 600/,
    )
    expect(() => renderKubernetes(model, { ...PROXY, backend: { primary: 100, replica: 200 } })).toThrow(
      /connections to the replica/,
    )
    // Pods that could open more connections than one proxy pod accepts.
    const wide = plan.map((u) => ({ ...u, production: { ...u.production, maxReplicas: 200 }, surge: 50 }))
    expect(() => kubernetesBudget(wide)).toThrow(
      /Over the proxy's client limit: functions and workers may open up to \d+ connections .* one proxy pod accepts 4096\. Largest: /,
    )
    expect(() => renderKubernetes(model)).not.toThrow()
  })
})

describe('docs/scaling.md', () => {
  const cells = (line: string) =>
    line
      .split('|')
      .slice(1, -1)
      .map((cell) => cell.trim())
  const number = (text: string | undefined) => Number((text ?? '').replace(/[*,]/g, ''))

  it("lists every unit with the plan's replicas and connections", async () => {
    const doc = await readFile(join(ROOT, 'docs', 'scaling.md'), 'utf8')
    const rows = doc
      .split('\n')
      .map(cells)
      .filter(
        (row) =>
          row.length === 8 &&
          /^`[\w-]+`$/.test(row[0] as string) &&
          /^(function|worker)$/.test(row[1] as string),
      )
    const podsAtMax = (u: UnitPlan) => u.production.maxReplicas + u.surge
    const mysqlAtMax = (u: UnitPlan) => podsAtMax(u) * (u.pools.mysqlPrimary + u.pools.mysqlReplica)
    expect(rows.map((row) => row.slice(0, 6))).toEqual(
      plan.map((u) => [
        `\`${u.name}\``,
        u.component,
        String(u.production.minReplicas),
        String(u.production.maxReplicas),
        String(u.surge),
        String(mysqlAtMax(u)),
      ]),
    )
    // Redis per pod is measured (scripts/redis-connections.test.ts); at max is that times the pods.
    for (const row of rows) {
      const unit = must(
        plan.find((u) => `\`${u.name}\`` === row[0]),
        String(row[0]),
      )
      expect(number(row[7]), unit.name).toBe(podsAtMax(unit) * number(row[6]))
    }
    const all = doc
      .split('\n')
      .map(cells)
      .find((row) => row[0] === '**all**')
    const total = (pick: (u: UnitPlan) => number) => plan.reduce((sum, u) => sum + pick(u), 0)
    expect(all?.slice(2, 6).map(number)).toEqual([
      total((u) => u.production.minReplicas),
      total((u) => u.production.maxReplicas),
      total((u) => u.surge),
      total(mysqlAtMax),
    ])
    expect(number(all?.[7])).toBe(rows.reduce((sum, row) => sum + number(row[7]), 0))
  })

  it("gives MariaDB's side of the budget as the generator computes it", async () => {
    const doc = await readFile(join(ROOT, 'docs', 'scaling.md'), 'utf8')
    const budget = kubernetesBudget(plan)
    const rows = doc
      .split('\n')
      .map(cells)
      .filter((row) => row.length === 4 && /^\*?\*?`?[\w-]+`?\*?\*?$/.test(row[0] as string))
    const row = (name: string) => rows.find((r) => r[0] === name)
    for (const consumer of budget.mariadb.rows) {
      expect(row(`\`${consumer.name}\``)?.slice(1).map(number), consumer.name).toEqual([
        consumer.instances,
        consumer.primary,
        consumer.replica,
      ])
    }
    expect(row('headroom')?.slice(2).map(number)).toEqual([MARIADB_LIMITS.headroom, MARIADB_LIMITS.headroom])
    expect(row('**max_connections**')?.slice(2).map(number)).toEqual([
      budget.mariadb.maxConnections,
      budget.mariadb.maxConnections,
    ])
  })
})
