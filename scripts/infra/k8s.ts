import { stringify } from 'yaml'
import { DEFAULT_DATABASE_POOL_SIZE, DEFAULT_DATABASE_REPLICA_POOL_SIZE, ENV_VARS } from '../../shared/config'
import { eventTopology } from '../../shared/events/topology'
import { MAX_BODY_BYTES } from '../../shared/http/app'
import { SHUTDOWN_DEADLINE_MS } from '../../shared/runtime/server'
import {
  type BudgetLimits,
  type ConnectionBudget,
  ConnectionBudgetError,
  connectionBudget,
  MARIADB_LIMITS,
} from '../connection-budget'
import {
  MYSQL_HOSTS,
  PROXYSQL_IMAGE,
  PROXYSQL_LIMITS,
  PROXYSQL_PORTS,
  proxySqlStart,
  renderProxySqlCnf,
} from './proxysql'

/**
 * The Kubernetes deployment, rendered from the functions/ folder by `npm run gen:infra` into infra/k8s:
 * a kustomize base (one Deployment, Service, HPA, PDB and ServiceMonitor per function and worker, the
 * Ingress, NetworkPolicies, the migration and backup CronJobs), a KEDA component, and two overlays
 * (`small` for one node, `production`). See docs/scaling.md for how and why each tier scales.
 */

/** What the generator needs to know about the functions/ folder (gen-infra's model has this shape). */
export type K8sModel = {
  functions: Array<{ name: string; route: { method: string; path: string; access?: string } }>
  workers: string[]
}

export const NAMESPACE = 'commerce'
/** Every function and worker container serves traffic, /health and /metrics here (PORT). */
export const CONTAINER_PORT = 8080
/** The image name in the base; overlays and CD map it to a registry and tag (kustomize `images`). */
export const imageName = (unit: string) => `commerce-${unit}`
export const BACKUP_IMAGE = 'commerce-backup'
export const MIGRATE_IMAGE = 'commerce-migrate'

/** Names the Deployments read their settings from. The Secret is created by the operator, never committed. */
export const CONFIG_MAP = 'commerce-config'
export const SECRET = 'commerce-secrets'
export const TLS_SECRET = 'commerce-tls'
export const INGRESS_HOST = 'shop.example.com'
/** Where the cluster's add-ons run; NetworkPolicies let exactly these in. */
export const ADDON_NAMESPACES = { ingress: 'ingress-nginx', monitoring: 'monitoring', keda: 'keda' } as const

/**
 * Seconds between the pod leaving the Service's endpoints and SIGTERM: long enough for every ingress
 * controller and kube-proxy to stop sending it new requests, so none arrive after the process stops
 * accepting. Then the process has SHUTDOWN_DEADLINE_MS to finish in-flight requests (shared/runtime/server.ts).
 */
export const PRE_STOP_SECONDS = 5
export const TERMINATION_GRACE_SECONDS = PRE_STOP_SECONDS + Math.ceil(SHUTDOWN_DEADLINE_MS / 1000) + 5

export type Component = 'function' | 'worker'

export type Scaling = {
  minReplicas: number
  maxReplicas: number
  /** HPA target: average CPU use as a share of the request. */
  cpuTargetPercent: number
}

/**
 * Production scaling. Requests are half a core: the bench measured 3.6 ms of CPU per order and 0.4 ms per
 * product read in one Node process (docs/benchmarks.md), so at the 70 % target a pod takes about 100 orders
 * or 900 product reads a second before the HPA adds one. Functions not named here get the default; a new
 * function needs no entry.
 */
export const DEFAULT_SCALING: Scaling = { minReplicas: 2, maxReplicas: 6, cpuTargetPercent: 70 }
export const SCALING_OVERRIDES: Record<string, Partial<Scaling>> = {
  'order-create': { minReplicas: 3, maxReplicas: 20 },
  'product-get': { minReplicas: 3, maxReplicas: 12 },
  'product-list': { maxReplicas: 8 },
  'product-popular': { maxReplicas: 8 },
  'coupon-issue': { minReplicas: 2, maxReplicas: 12 },
  // Workers: the CPU HPA is the fallback; with KEDA they scale on their backlog (components/keda).
  'outbox-relay': { minReplicas: 1, maxReplicas: 4 },
  'stats-consumer': { minReplicas: 1, maxReplicas: 6 },
}
/** Admin routes serve a few operators: one pod (a drain briefly pauses them), a second under load. */
export const ADMIN_SCALING: Scaling = { minReplicas: 1, maxReplicas: 2, cpuTargetPercent: 70 }
/** The single-node overlay: one pod each, a second only under load. */
export const SMALL_SCALING: Scaling = { minReplicas: 1, maxReplicas: 2, cpuTargetPercent: 70 }

export const RESOURCES = {
  production: { requests: { cpu: '500m', memory: '192Mi' }, limits: { cpu: '1', memory: '384Mi' } },
  small: { requests: { cpu: '50m', memory: '128Mi' }, limits: { cpu: '1', memory: '384Mi' } },
} as const

/**
 * KEDA triggers. The statistics consumer scales on the messages waiting in its queues; the relay on
 * outbox lag, the relay's own gauge of rows not yet confirmed by RabbitMQ (outbox_unpublished_events,
 * set by every relay's sweeper to the same count, hence max()).
 */
export const KEDA = {
  /** Ready messages per consumer pod; one pod applies a few hundred events a second. */
  queueMessagesPerPod: 500,
  /** Unpublished outbox rows per relay pod. */
  outboxLagPerPod: 1000,
  prometheusAddress: `http://prometheus-operated.${ADDON_NAMESPACES.monitoring}.svc:9090`,
  pollingSeconds: 15,
  cooldownSeconds: 300,
} as const

export type UnitPlan = {
  name: string
  component: Component
  production: Scaling
  small: Scaling
  /** Pods a rolling update adds beside `production.maxReplicas` at most (maxSurge, rounded up). */
  surge: number
  /** MySQL connections one pod may hold (DATABASE_POOL_SIZE, DATABASE_REPLICA_POOL_SIZE), to the proxy. */
  pools: { mysqlPrimary: number; mysqlReplica: number }
}

/** The Deployments' rolling update: never below the wanted pods, a quarter more while it rolls. */
export const MAX_SURGE_PERCENT = 25
/** Kubernetes rounds a percentage maxSurge up. */
export const surgeOf = (replicas: number) => Math.ceil((replicas * MAX_SURGE_PERCENT) / 100)

/** Every deployable unit with its replica bounds and pool sizes: the inputs of a connection budget. */
export function deploymentPlan(model: K8sModel): UnitPlan[] {
  const units: Array<[string, Component, Scaling]> = [
    ...model.functions.map((fn): [string, Component, Scaling] => [
      fn.name,
      'function',
      fn.route.access === 'admin' ? ADMIN_SCALING : DEFAULT_SCALING,
    ]),
    ...model.workers.map((name): [string, Component, Scaling] => [name, 'worker', DEFAULT_SCALING]),
  ]
  return units
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, component, scaling]) => ({
      name,
      component,
      production: { ...scaling, ...SCALING_OVERRIDES[name] },
      small: SMALL_SCALING,
      surge: surgeOf({ ...scaling, ...SCALING_OVERRIDES[name] }.maxReplicas),
      pools: { mysqlPrimary: POOL_SIZES.primary, mysqlReplica: POOL_SIZES.replica },
    }))
}

/** What every function and worker pod is given (the ConfigMap's DATABASE_POOL_SIZE and DATABASE_REPLICA_POOL_SIZE). */
export const POOL_SIZES = {
  primary: DEFAULT_DATABASE_POOL_SIZE,
  replica: DEFAULT_DATABASE_REPLICA_POOL_SIZE,
} as const

// ------------------------------------------------------------------------------- connection proxy

/**
 * At HPA maxReplicas every function and worker pod together may hold far more MySQL connections than one
 * MariaDB admits (docs/scaling.md), so they all connect to the connection proxy (ProxySQL), which lends a
 * bounded set of server connections per transaction. Its own replicas are fixed (no autoscaler): two for
 * availability, one more while it rolls.
 */
export const PROXY = {
  name: 'mysql-proxy',
  replicas: 2,
  surge: 1,
  /** Backend connections of one proxy pod (infra/mysql/proxysql.cnf, the same file as Compose's). */
  backend: { primary: PROXYSQL_LIMITS.primary, replica: PROXYSQL_LIMITS.replica },
  /** Client connections one proxy pod accepts; kube-proxy may send every pool to the same one. */
  clients: PROXYSQL_LIMITS.clients,
} as const
export type ProxyPlan = {
  replicas: number
  surge: number
  backend: { primary: number; replica: number }
  clients: number
}

/**
 * What connects to MariaDB without the proxy: the migration Job (one connection at a time, and the Job
 * runs once per release) and the daily backup (mariadb-dump, one connection). The proxy would pin the
 * migration's GET_LOCK session anyway, and the backup reads the binary log position of its own snapshot.
 */
export const DIRECT_MYSQL_CLIENTS = [
  { name: 'migrate', instances: 1, poolSize: 1, replicaPoolSize: 0 },
  { name: 'db-backup', instances: 1, poolSize: 1, replicaPoolSize: 0 },
] as const

export type KubernetesBudget = {
  /** Every function and worker pod at maxReplicas plus surge, both pools full: the proxy's clients. */
  clients: ConnectionBudget
  /** What MariaDB sees: every proxy pod's backend limit, plus the direct clients, plus headroom. */
  mariadb: ConnectionBudget
}

/**
 * The connection budget of the Kubernetes topology. Refuses (ConnectionBudgetError) one whose pods could
 * hold more client connections than one proxy pod accepts, or whose MariaDB-side sum is over the
 * max_connections one server may be given.
 */
export function kubernetesBudget(
  plan: UnitPlan[],
  proxy: ProxyPlan = PROXY,
  limits: BudgetLimits = MARIADB_LIMITS,
): KubernetesBudget {
  // Added up here, checked below: the proxy's limit is on both pools of a pod together (one port each).
  const clients = connectionBudget(
    plan.map((unit) => ({
      name: unit.name,
      instances: unit.production.maxReplicas,
      surge: unit.surge,
      poolSize: unit.pools.mysqlPrimary,
      replicaPoolSize: unit.pools.mysqlReplica,
    })),
    { ceiling: Number.MAX_SAFE_INTEGER, headroom: 0 },
  )
  const total = clients.primary + clients.replica
  if (total > proxy.clients) {
    const largest = [...clients.rows]
      .sort((a, b) => b.primary + b.replica - (a.primary + a.replica))
      .slice(0, 3)
      .map((row) => `${row.name} ${row.instances} pods = ${row.primary + row.replica}`)
    throw new ConnectionBudgetError(
      `Over the proxy's client limit: functions and workers may open up to ${total} connections ` +
        `(${clients.primary} for the primary, ${clients.replica} for the replica), but one proxy pod ` +
        `accepts ${proxy.clients}. Largest: ${largest.join(', ')}. Lower maxReplicas or the pool sizes, or ` +
        "raise the proxy's client limit (scripts/infra/proxysql.ts).",
    )
  }
  const mariadb = connectionBudget(
    [
      {
        name: PROXY.name,
        instances: proxy.replicas,
        surge: proxy.surge,
        poolSize: proxy.backend.primary,
        replicaPoolSize: proxy.backend.replica,
      },
      ...DIRECT_MYSQL_CLIENTS,
    ],
    limits,
  )
  return { clients, mariadb }
}

// ------------------------------------------------------------------------------------------- helpers

type Doc = Record<string, unknown>

const GENERATED =
  '# Generated by `npm run gen:infra` (scripts/infra/k8s.ts) from functions/. Do not edit by hand.'

const yamlFile = (docs: Doc[], note?: string) =>
  [
    GENERATED,
    ...(note ? [`# ${note}`] : []),
    docs.map((doc) => stringify(doc, { lineWidth: 0 })).join('---\n'),
  ]
    .join('\n')
    .replace(/\n*$/, '\n')

const labelsFor = (name: string, component: string) => ({
  'app.kubernetes.io/name': name,
  'app.kubernetes.io/component': component,
  'app.kubernetes.io/part-of': 'commerce',
})

const selectorFor = (name: string) => ({ 'app.kubernetes.io/name': name })

/** The namespace and settings: CD applies these, then the migrate CronJob, before anything else. */
const CONFIG_LABELS = { 'app.kubernetes.io/component': 'config', 'app.kubernetes.io/part-of': 'commerce' }

/** The settings every function and worker reads, by where their values live. */
const CONFIG_KEYS = {
  configMap: {
    NODE_ENV: 'production',
    PORT: String(CONTAINER_PORT),
    // Set here rather than left to the defaults: they are the pools the connection budget adds up.
    DATABASE_POOL_SIZE: String(POOL_SIZES.primary),
    DATABASE_REPLICA_POOL_SIZE: String(POOL_SIZES.replica),
    BUSINESS_TIMEZONE: 'Asia/Seoul',
    LOG_LEVEL: 'info',
    PRODUCT_CACHE_TTL_SECONDS: '3600',
    POPULAR_CACHE_TTL_SECONDS: '600',
    RATE_LIMIT_PER_SECOND: '50',
    RATE_LIMIT_BURST: '100',
  },
  /** Keys of the operator's Secret; URLs carry passwords. Optional ones may be left out of it. */
  secret: {
    REDIS_URL: false,
    RABBITMQ_URL: false,
    JWT_SECRET: false,
    /** Only during a rotation (docs/operations.md). */
    JWT_SECRET_PREVIOUS: true,
  },
} as const

for (const name of [...Object.keys(CONFIG_KEYS.configMap), ...Object.keys(CONFIG_KEYS.secret)]) {
  if (!ENV_VARS.includes(name)) throw new Error(`k8s: ${name} is not read by shared/config.ts`)
}

/**
 * The password of the application's MySQL user (`commerce`), from the Secret: the functions' database
 * URLs are composed from it (Kubernetes expands `$(NAME)` in a value from a variable listed before it),
 * so they can only point at the proxy. Letters and digits only, as it goes into a URL unescaped.
 */
export const MYSQL_PASSWORD_VARIABLE = 'MYSQL_PASSWORD'
export const proxyUrl = (port: number) =>
  `mysql://commerce:$(${MYSQL_PASSWORD_VARIABLE})@${PROXY.name}:${port}/commerce`

/** Keys of the operator's Secret (docs/scaling.md says what each holds); none is ever committed. */
export const SECRET_KEYS = [
  MYSQL_PASSWORD_VARIABLE,
  ...Object.keys(CONFIG_KEYS.secret),
  'MIGRATE_DATABASE_URL',
  'BACKUP_DATABASE_URL',
  'PROXYSQL_ADMIN_PASSWORD',
] as const

const appEnv = () => [
  {
    name: MYSQL_PASSWORD_VARIABLE,
    valueFrom: { secretKeyRef: { name: SECRET, key: MYSQL_PASSWORD_VARIABLE } },
  },
  // Through the connection proxy, never to MariaDB itself: the budget counts the proxy's connections.
  { name: 'DATABASE_URL', value: proxyUrl(PROXYSQL_PORTS.primary) },
  { name: 'DATABASE_REPLICA_URL', value: proxyUrl(PROXYSQL_PORTS.replica) },
  ...Object.keys(CONFIG_KEYS.configMap).map((name) => ({
    name,
    valueFrom: { configMapKeyRef: { name: CONFIG_MAP, key: name } },
  })),
  ...Object.entries(CONFIG_KEYS.secret).map(([name, optional]) => ({
    name,
    valueFrom: { secretKeyRef: { name: SECRET, key: name, ...(optional ? { optional: true } : {}) } },
  })),
]

/** Non-root (the image's `node` user), no privilege escalation, no capabilities, read-only root. */
const podSecurity = (uid: number) => ({
  runAsNonRoot: true,
  runAsUser: uid,
  runAsGroup: uid,
  fsGroup: uid,
  seccompProfile: { type: 'RuntimeDefault' },
})
const containerSecurity = {
  allowPrivilegeEscalation: false,
  readOnlyRootFilesystem: true,
  capabilities: { drop: ['ALL'] },
}
const NODE_UID = 1000
/** The mariadb image's `mysql` user, which the backup image runs as (Dockerfile, target backup). */
const MYSQL_UID = 999

const tmpVolume = { name: 'tmp', emptyDir: { sizeLimit: '64Mi' } }
const tmpMount = { name: 'tmp', mountPath: '/tmp' }

// ---------------------------------------------------------------------------------------- workloads

function deployment(unit: UnitPlan): Doc {
  const labels = labelsFor(unit.name, unit.component)
  const spread = (topologyKey: string) => ({
    maxSkew: 1,
    topologyKey,
    // A zone or node short of capacity delays nothing: spreading is a preference, not a condition.
    whenUnsatisfiable: 'ScheduleAnyway',
    labelSelector: { matchLabels: selectorFor(unit.name) },
    matchLabelKeys: ['pod-template-hash'],
  })
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: unit.name, labels },
    spec: {
      // No `replicas`: the HPA (or KEDA) owns it, and an apply must not reset it.
      revisionHistoryLimit: 10,
      minReadySeconds: 5,
      selector: { matchLabels: selectorFor(unit.name) },
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: '25%' } },
      template: {
        metadata: { labels },
        spec: {
          automountServiceAccountToken: false,
          terminationGracePeriodSeconds: TERMINATION_GRACE_SECONDS,
          securityContext: podSecurity(NODE_UID),
          topologySpreadConstraints: [
            spread('topology.kubernetes.io/zone'),
            spread('kubernetes.io/hostname'),
          ],
          containers: [
            {
              name: unit.name,
              image: imageName(unit.name),
              imagePullPolicy: 'IfNotPresent',
              // The image's entry point runs the bundle of this name (infra/docker/entrypoint.sh).
              args: [unit.name],
              ports: [{ name: 'http', containerPort: CONTAINER_PORT, protocol: 'TCP' }],
              env: appEnv(),
              resources: RESOURCES.production,
              startupProbe: {
                httpGet: { path: '/health/live', port: 'http' },
                periodSeconds: 2,
                failureThreshold: 30,
              },
              readinessProbe: {
                httpGet: { path: '/health/ready', port: 'http' },
                periodSeconds: 5,
                timeoutSeconds: 2,
                failureThreshold: 2,
              },
              livenessProbe: {
                httpGet: { path: '/health/live', port: 'http' },
                periodSeconds: 10,
                timeoutSeconds: 2,
                failureThreshold: 3,
              },
              lifecycle: { preStop: { exec: { command: ['sleep', String(PRE_STOP_SECONDS)] } } },
              securityContext: containerSecurity,
              volumeMounts: [tmpMount],
            },
          ],
          volumes: [tmpVolume],
        },
      },
    },
  }
}

const service = (unit: UnitPlan): Doc => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name: unit.name, labels: labelsFor(unit.name, unit.component) },
  spec: {
    type: 'ClusterIP',
    selector: selectorFor(unit.name),
    ports: [{ name: 'http', port: CONTAINER_PORT, targetPort: 'http', protocol: 'TCP' }],
  },
})

const hpa = (unit: UnitPlan): Doc => ({
  apiVersion: 'autoscaling/v2',
  kind: 'HorizontalPodAutoscaler',
  metadata: { name: unit.name, labels: labelsFor(unit.name, unit.component) },
  spec: {
    scaleTargetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: unit.name },
    minReplicas: unit.production.minReplicas,
    maxReplicas: unit.production.maxReplicas,
    metrics: [
      {
        type: 'Resource',
        resource: {
          name: 'cpu',
          target: { type: 'Utilization', averageUtilization: unit.production.cpuTargetPercent },
        },
      },
    ],
    behavior: {
      // Out fast (a sale starts in seconds), in slowly (it comes in waves).
      scaleUp: {
        stabilizationWindowSeconds: 0,
        selectPolicy: 'Max',
        policies: [
          { type: 'Percent', value: 100, periodSeconds: 15 },
          { type: 'Pods', value: 4, periodSeconds: 15 },
        ],
      },
      scaleDown: {
        stabilizationWindowSeconds: 300,
        policies: [{ type: 'Percent', value: 50, periodSeconds: 60 }],
      },
    },
  },
})

const pdb = (unit: UnitPlan): Doc => ({
  apiVersion: 'policy/v1',
  kind: 'PodDisruptionBudget',
  metadata: { name: unit.name, labels: labelsFor(unit.name, unit.component) },
  // One pod at a time may be evicted (node drains, upgrades); with one replica that still lets a drain proceed.
  spec: { maxUnavailable: 1, selector: { matchLabels: selectorFor(unit.name) } },
})

const serviceMonitor = (unit: UnitPlan): Doc => ({
  apiVersion: 'monitoring.coreos.com/v1',
  kind: 'ServiceMonitor',
  metadata: { name: unit.name, labels: labelsFor(unit.name, unit.component) },
  spec: {
    selector: { matchLabels: selectorFor(unit.name) },
    endpoints: [{ port: 'http', path: '/metrics', interval: '15s', scrapeTimeout: '5s' }],
  },
})

// ------------------------------------------------------------------------------------------ ingress

/**
 * /v1/products/:productId → /v1/products/[^/]+$. The API server wants every Ingress path to start with
 * "/", and ingress-nginx writes a regex path as `location ~* "^<path>"`: with its `^`, this is the
 * regex infra/nginx/nginx.conf matches the route with.
 */
export function ingressPath(path: string): string {
  const segments = path
    .split('/')
    .map((segment) => (segment.startsWith(':') ? '[^/]+' : segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
  return `${segments.join('/')}$`
}

/**
 * ingress-nginx cannot route by method, and writes regex locations longest first. So two functions may
 * not share a path, and a static path that a parameterised one also matches must be the longer one, or
 * the parameterised function would receive it.
 */
function ingressRoutes(model: K8sModel): Array<{ name: string; path: string }> {
  const routes = model.functions.map((fn) => ({ name: fn.name, path: ingressPath(fn.route.path) }))
  for (const a of routes) {
    for (const b of routes) {
      if (a === b) continue
      if (a.path === b.path) {
        throw new Error(
          `k8s Ingress: ${a.name} and ${b.name} share a path; ingress-nginx routes by path only`,
        )
      }
      const literal = a.path.slice(0, -1).replaceAll('\\', '')
      const shadows = !a.path.includes('[^/]+') && new RegExp(`^${b.path}`).test(literal)
      if (shadows && a.path.length <= b.path.length) {
        throw new Error(`k8s Ingress: ${b.name}'s path would shadow ${a.name}'s in ingress-nginx`)
      }
    }
  }
  return routes.sort((x, y) => y.path.length - x.path.length || x.path.localeCompare(y.path))
}

function ingress(model: K8sModel): Doc {
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'Ingress',
    metadata: {
      name: 'commerce',
      labels: { 'app.kubernetes.io/part-of': 'commerce' },
      annotations: {
        'nginx.ingress.kubernetes.io/use-regex': 'true',
        'nginx.ingress.kubernetes.io/ssl-redirect': 'true',
        // docs/api.md: bodies over 64 KiB are 413, as in the functions (shared/http/app.ts MAX_BODY_BYTES).
        'nginx.ingress.kubernetes.io/proxy-body-size': `${MAX_BODY_BYTES / 1024}k`,
        'nginx.ingress.kubernetes.io/proxy-connect-timeout': '2',
        'nginx.ingress.kubernetes.io/proxy-read-timeout': '30',
        'nginx.ingress.kubernetes.io/proxy-send-timeout': '30',
      },
    },
    spec: {
      ingressClassName: 'nginx',
      tls: [{ hosts: [INGRESS_HOST], secretName: TLS_SECRET }],
      rules: [
        {
          host: INGRESS_HOST,
          http: {
            // Only /v1 routes: /metrics and /health are never routed from outside.
            paths: ingressRoutes(model).map(({ name, path }) => ({
              path,
              pathType: 'ImplementationSpecific',
              backend: { service: { name, port: { name: 'http' } } },
            })),
          },
        },
      ],
    },
  }
}

// ---------------------------------------------------------------------------------- network policies

const componentIn = (...components: string[]) => ({
  matchExpressions: [{ key: 'app.kubernetes.io/component', operator: 'In', values: components }],
})
const fromNamespace = (namespace: string, podLabels: Record<string, string>) => ({
  namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': namespace } },
  podSelector: { matchLabels: podLabels },
})
const policy = (name: string, spec: Doc): Doc => ({
  apiVersion: 'networking.k8s.io/v1',
  kind: 'NetworkPolicy',
  metadata: { name, labels: { 'app.kubernetes.io/part-of': 'commerce' } },
  spec: { policyTypes: ['Ingress'], ...spec },
})

/** Data stores run in this namespace with these labels (their operators' pod labels), or outside it. */
export const DATA_STORES = [
  // Functions and workers reach MySQL only through the proxy (its own policy below).
  { name: 'mysql', port: 3306, clients: ['proxy', 'migrate', 'backup'], extra: [] },
  { name: 'redis', port: 6379, clients: ['function', 'worker'], extra: [] },
  {
    name: 'rabbitmq',
    port: 5672,
    clients: ['function', 'worker'],
    // KEDA's rabbitmq scaler reads the statistics consumer's queue lengths over AMQP.
    extra: [fromNamespace(ADDON_NAMESPACES.keda, { app: 'keda-operator' })],
  },
] as const

function networkPolicies(): Doc[] {
  const app = componentIn('function', 'worker')
  return [
    policy('default-deny-ingress', { podSelector: {} }),
    policy('functions-from-ingress', {
      podSelector: componentIn('function'),
      ingress: [
        {
          from: [fromNamespace(ADDON_NAMESPACES.ingress, { 'app.kubernetes.io/name': 'ingress-nginx' })],
          ports: [{ port: 'http', protocol: 'TCP' }],
        },
      ],
    }),
    // Prometheus is the only client besides the ingress: /metrics is on the same port as the routes, and
    // the Ingress routes only /v1 paths.
    policy('metrics-from-prometheus', {
      podSelector: app,
      ingress: [
        {
          from: [fromNamespace(ADDON_NAMESPACES.monitoring, { 'app.kubernetes.io/name': 'prometheus' })],
          ports: [{ port: 'http', protocol: 'TCP' }],
        },
      ],
    }),
    policy(`${PROXY.name}-from-app`, {
      podSelector: { matchLabels: selectorFor(PROXY.name) },
      ingress: [
        {
          from: [{ podSelector: app }],
          ports: [PROXYSQL_PORTS.primary, PROXYSQL_PORTS.replica].map((port) => ({ port, protocol: 'TCP' })),
        },
      ],
    }),
    ...DATA_STORES.map((store) =>
      policy(`${store.name}-from-app`, {
        podSelector: { matchLabels: { 'app.kubernetes.io/name': store.name } },
        ingress: [
          {
            from: [{ podSelector: componentIn(...store.clients) }, ...store.extra],
            ports: [{ port: store.port, protocol: 'TCP' }],
          },
          // Replication and clustering between the store's own pods.
          { from: [{ podSelector: { matchLabels: { 'app.kubernetes.io/name': store.name } } }] },
        ],
      }),
    ),
  ]
}

// ------------------------------------------------------------------------------ migrations and backups

const jobPod = (options: {
  component: 'migrate' | 'backup'
  image: string
  uid: number
  command?: string[]
  args: string[]
  env: Doc[]
  volumes?: Doc[]
  mounts?: Doc[]
}): Doc => ({
  metadata: {
    labels: labelsFor(options.component === 'migrate' ? 'migrate' : 'db-backup', options.component),
  },
  spec: {
    restartPolicy: 'Never',
    automountServiceAccountToken: false,
    securityContext: podSecurity(options.uid),
    containers: [
      {
        name: options.component,
        image: options.image,
        imagePullPolicy: 'IfNotPresent',
        ...(options.command ? { command: options.command } : {}),
        args: options.args,
        env: options.env,
        resources: { requests: { cpu: '100m', memory: '128Mi' }, limits: { cpu: '1', memory: '512Mi' } },
        securityContext: containerSecurity,
        volumeMounts: [tmpMount, ...(options.mounts ?? [])],
      },
    ],
    volumes: [tmpVolume, ...(options.volumes ?? [])],
  },
})

const secretEnv = (name: string, key = name) => ({ name, valueFrom: { secretKeyRef: { name: SECRET, key } } })

/**
 * Migrations as a suspended CronJob: never scheduled, it is the template CD runs once per release
 * (`kubectl create job --from=cronjob/migrate`) before rolling the Deployments.
 */
const migrateCronJob = (): Doc => ({
  apiVersion: 'batch/v1',
  kind: 'CronJob',
  metadata: { name: 'migrate', labels: labelsFor('migrate', 'migrate') },
  spec: {
    suspend: true,
    schedule: '0 0 1 1 *',
    concurrencyPolicy: 'Forbid',
    jobTemplate: {
      spec: {
        backoffLimit: 2,
        activeDeadlineSeconds: 600,
        template: jobPod({
          component: 'migrate',
          image: MIGRATE_IMAGE,
          uid: NODE_UID,
          args: ['migrate'],
          env: [
            { name: 'NODE_ENV', valueFrom: { configMapKeyRef: { name: CONFIG_MAP, key: 'NODE_ENV' } } },
            // The primary itself, as a user that may change the schema: migrations do not go through the proxy.
            secretEnv('DATABASE_URL', 'MIGRATE_DATABASE_URL'),
            secretEnv('JWT_SECRET'),
          ],
        }),
      },
    },
  },
})

export const BACKUP_SCHEDULE = '30 3 * * *'
export const BACKUP_KEEP_DAYS = 14

/**
 * The daily backup (scripts/db-backup.ts) onto a volume of its own, keeping BACKUP_KEEP_DAYS days. It
 * connects as a backup user: the Secret's BACKUP_DATABASE_URL key, passed as the DATABASE_URL it reads.
 */
const backupResources = (): Doc[] => [
  {
    apiVersion: 'v1',
    kind: 'PersistentVolumeClaim',
    metadata: { name: 'db-backups', labels: labelsFor('db-backup', 'backup') },
    spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '50Gi' } } },
  },
  {
    apiVersion: 'batch/v1',
    kind: 'CronJob',
    metadata: { name: 'db-backup', labels: labelsFor('db-backup', 'backup') },
    spec: {
      schedule: BACKUP_SCHEDULE,
      timeZone: 'Etc/UTC',
      concurrencyPolicy: 'Forbid',
      startingDeadlineSeconds: 3600,
      successfulJobsHistoryLimit: 3,
      failedJobsHistoryLimit: 3,
      jobTemplate: {
        spec: {
          backoffLimit: 2,
          activeDeadlineSeconds: 4 * 3600,
          template: jobPod({
            component: 'backup',
            image: BACKUP_IMAGE,
            uid: MYSQL_UID,
            command: ['node', '/app/db-backup.mjs'],
            args: ['--root', '/backups', '--keep-days', String(BACKUP_KEEP_DAYS)],
            env: [secretEnv('DATABASE_URL', 'BACKUP_DATABASE_URL')],
            volumes: [{ name: 'backups', persistentVolumeClaim: { claimName: 'db-backups' } }],
            mounts: [{ name: 'backups', mountPath: '/backups' }],
          }),
        },
      },
    },
  },
]

// -------------------------------------------------------------------------------- the MySQL proxy

const MYSQL_HOSTS_TEXT = `${MYSQL_HOSTS.primary} and ${MYSQL_HOSTS.replica}`

/** Any non-root uid: ProxySQL writes only to its data folder and /tmp, both emptyDirs. */
const PROXY_UID = 65532
const PROXY_CONFIG_MAP = `${PROXY.name}-config`

function proxyResources(budget: KubernetesBudget): Doc[] {
  const labels = labelsFor(PROXY.name, 'proxy')
  const port = (name: string, containerPort: number) => ({ name, containerPort, protocol: 'TCP' })
  return [
    {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: PROXY_CONFIG_MAP, labels },
      data: { 'proxysql.cnf.in': renderProxySqlCnf() },
    },
    {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: PROXY.name, labels },
      spec: {
        // Fixed, not autoscaled: every pod's backend limit counts against MariaDB's max_connections.
        replicas: PROXY.replicas,
        revisionHistoryLimit: 10,
        selector: { matchLabels: selectorFor(PROXY.name) },
        strategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: PROXY.surge } },
        template: {
          metadata: {
            labels,
            annotations: {
              'commerce/mariadb-connections': `primary ${budget.mariadb.primary}, replica ${budget.mariadb.replica}`,
            },
          },
          spec: {
            automountServiceAccountToken: false,
            // Clients' connections end with the pod: a transaction in flight fails and is retried by the
            // function (a lost connection before COMMIT), so the pod leaves the Service's endpoints first.
            terminationGracePeriodSeconds: 30,
            securityContext: podSecurity(PROXY_UID),
            topologySpreadConstraints: [
              {
                maxSkew: 1,
                topologyKey: 'kubernetes.io/hostname',
                whenUnsatisfiable: 'ScheduleAnyway',
                labelSelector: { matchLabels: selectorFor(PROXY.name) },
                matchLabelKeys: ['pod-template-hash'],
              },
            ],
            containers: [
              {
                name: 'proxysql',
                image: PROXYSQL_IMAGE,
                imagePullPolicy: 'IfNotPresent',
                command: ['sh', '-c', proxySqlStart('/etc/proxysql/proxysql.cnf.in')],
                env: [MYSQL_PASSWORD_VARIABLE, 'PROXYSQL_ADMIN_PASSWORD'].map((name) => secretEnv(name)),
                ports: [port('mysql', PROXYSQL_PORTS.primary), port('mysql-replica', PROXYSQL_PORTS.replica)],
                resources: {
                  requests: { cpu: '250m', memory: '128Mi' },
                  limits: { cpu: '1', memory: '512Mi' },
                },
                readinessProbe: { tcpSocket: { port: 'mysql' }, periodSeconds: 5, failureThreshold: 2 },
                livenessProbe: { tcpSocket: { port: 'mysql' }, periodSeconds: 10, failureThreshold: 3 },
                lifecycle: { preStop: { exec: { command: ['sleep', String(PRE_STOP_SECONDS)] } } },
                securityContext: containerSecurity,
                volumeMounts: [
                  tmpMount,
                  { name: 'config', mountPath: '/etc/proxysql', readOnly: true },
                  { name: 'data', mountPath: '/var/lib/proxysql' },
                ],
              },
            ],
            volumes: [
              tmpVolume,
              { name: 'config', configMap: { name: PROXY_CONFIG_MAP } },
              { name: 'data', emptyDir: { sizeLimit: '256Mi' } },
            ],
          },
        },
      },
    },
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: PROXY.name, labels },
      spec: {
        type: 'ClusterIP',
        selector: selectorFor(PROXY.name),
        ports: [
          { name: 'mysql', port: PROXYSQL_PORTS.primary, targetPort: 'mysql', protocol: 'TCP' },
          {
            name: 'mysql-replica',
            port: PROXYSQL_PORTS.replica,
            targetPort: 'mysql-replica',
            protocol: 'TCP',
          },
        ],
      },
    },
    {
      apiVersion: 'policy/v1',
      kind: 'PodDisruptionBudget',
      metadata: { name: PROXY.name, labels },
      spec: { maxUnavailable: 1, selector: { matchLabels: selectorFor(PROXY.name) } },
    },
  ]
}

// ------------------------------------------------------------------------------------------------ KEDA

function scaledObjects(plan: UnitPlan[]): Doc[] {
  const unit = (name: string) => {
    const found = plan.find((u) => u.name === name)
    if (!found) throw new Error(`k8s: KEDA scales ${name}, which is not in functions/`)
    return found
  }
  const topology = eventTopology()
  const scaled = (target: UnitPlan, triggers: Doc[]): Doc => ({
    apiVersion: 'keda.sh/v1alpha1',
    kind: 'ScaledObject',
    metadata: { name: target.name, labels: labelsFor(target.name, target.component) },
    spec: {
      scaleTargetRef: { name: target.name },
      minReplicaCount: target.production.minReplicas,
      maxReplicaCount: target.production.maxReplicas,
      pollingInterval: KEDA.pollingSeconds,
      cooldownPeriod: KEDA.cooldownSeconds,
      // The backlog cannot be read (broker or Prometheus away): hold two pods rather than guess.
      fallback: { failureThreshold: 3, replicas: Math.min(2, target.production.maxReplicas) },
      advanced: {
        horizontalPodAutoscalerConfig: {
          behavior: { scaleDown: { stabilizationWindowSeconds: KEDA.cooldownSeconds } },
        },
      },
      triggers,
    },
  })
  return [
    {
      apiVersion: 'keda.sh/v1alpha1',
      kind: 'TriggerAuthentication',
      metadata: { name: 'rabbitmq', labels: { 'app.kubernetes.io/part-of': 'commerce' } },
      // The scaler's `host` is the same amqp:// URL the consumer uses, read from the operator's Secret.
      spec: { secretTargetRef: [{ parameter: 'host', name: SECRET, key: 'RABBITMQ_URL' }] },
    },
    scaled(
      unit('stats-consumer'),
      [topology.queues.orderCompleted, topology.queues.orderCancelled].map((queueName) => ({
        type: 'rabbitmq',
        name: queueName.replaceAll('.', '-'),
        metadata: {
          protocol: 'amqp',
          mode: 'QueueLength',
          value: String(KEDA.queueMessagesPerPod),
          queueName,
        },
        authenticationRef: { name: 'rabbitmq' },
      })),
    ),
    scaled(unit('outbox-relay'), [
      {
        type: 'prometheus',
        name: 'outbox-lag',
        metadata: {
          serverAddress: KEDA.prometheusAddress,
          query: `max(outbox_unpublished_events{namespace="${NAMESPACE}"})`,
          threshold: String(KEDA.outboxLagPerPod),
        },
      },
    ]),
  ]
}

// ---------------------------------------------------------------------------------------------- render

const kustomization = (fields: Doc, kind = 'Kustomization'): Doc => ({
  apiVersion: kind === 'Component' ? 'kustomize.config.k8s.io/v1alpha1' : 'kustomize.config.k8s.io/v1beta1',
  kind,
  ...fields,
})

const jsonPatch = (operations: Doc[]) => operations.map((op) => stringify([op], { lineWidth: 0 })).join('')

/**
 * Repository-relative path → content of every file under infra/k8s. Refuses (ConnectionBudgetError) a
 * topology over the connection budget; `proxy` is for tests of that refusal.
 */
export function renderKubernetes(model: K8sModel, proxy: ProxyPlan = PROXY): Record<string, string> {
  const plan = deploymentPlan(model)
  const budget = kubernetesBudget(plan, proxy)
  const files: Record<string, string> = {}
  const base = 'infra/k8s/base'

  files[`${base}/namespace.yaml`] = yamlFile([
    {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: NAMESPACE, labels: CONFIG_LABELS },
    },
  ])
  files[`${base}/config.yaml`] = yamlFile(
    [
      {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: CONFIG_MAP, labels: CONFIG_LABELS },
        data: CONFIG_KEYS.configMap,
      },
    ],
    `Settings without secrets. The Secret ${SECRET} (keys ${SECRET_KEYS.join(', ')}) and the TLS Secret ${TLS_SECRET} are created by the operator: see docs/scaling.md.`,
  )
  files[`${base}/mysql-proxy.yaml`] = yamlFile(
    proxyResources(budget),
    `The connection proxy every function and worker reaches MySQL through. MariaDB sees at most ` +
      `${budget.mariadb.primary} connections to the primary and ${budget.mariadb.replica} to the replica ` +
      `(${proxy.replicas + proxy.surge} proxy pods while one rolls, plus migrations and backups): give it ` +
      `max_connections = ${budget.mariadb.maxConnections} or more. Services ${MYSQL_HOSTS_TEXT} must reach the servers.`,
  )
  for (const unit of plan) {
    files[`${base}/${unit.component}s/${unit.name}.yaml`] = yamlFile([
      deployment(unit),
      service(unit),
      hpa(unit),
      pdb(unit),
      serviceMonitor(unit),
    ])
  }
  files[`${base}/ingress.yaml`] = yamlFile(
    [ingress(model)],
    'The same per-function routes as infra/nginx/nginx.conf.',
  )
  files[`${base}/network-policies.yaml`] = yamlFile(networkPolicies())
  files[`${base}/migrate.yaml`] = yamlFile([migrateCronJob()])
  files[`${base}/backup.yaml`] = yamlFile(backupResources())
  files[`${base}/kustomization.yaml`] = yamlFile([
    kustomization({
      namespace: NAMESPACE,
      resources: [
        'namespace.yaml',
        'config.yaml',
        'mysql-proxy.yaml',
        ...plan.map((unit) => `${unit.component}s/${unit.name}.yaml`),
        'ingress.yaml',
        'network-policies.yaml',
        'migrate.yaml',
        'backup.yaml',
      ],
    }),
  ])

  const workers = plan.filter((unit) => unit.component === 'worker')
  files['infra/k8s/components/keda/scaled-objects.yaml'] = yamlFile(scaledObjects(plan))
  files['infra/k8s/components/keda/kustomization.yaml'] = yamlFile(
    [
      kustomization(
        {
          resources: ['scaled-objects.yaml'],
          // KEDA makes its own HPA for each ScaledObject; two HPAs on one Deployment would fight.
          patches: workers.map((unit) => ({
            target: { kind: 'HorizontalPodAutoscaler', name: unit.name },
            patch: stringify(
              {
                $patch: 'delete',
                apiVersion: 'autoscaling/v2',
                kind: 'HorizontalPodAutoscaler',
                metadata: { name: unit.name },
              },
              { lineWidth: 0 },
            ),
          })),
        },
        'Component',
      ),
    ],
    'Where KEDA is installed: the workers scale on their backlog instead of the CPU HPA of the base.',
  )

  const images = (newName: (unit: string) => string, newTag: string) =>
    [...plan.map((unit) => unit.name), 'migrate', 'backup'].map((unit) => ({
      name: unit === 'backup' ? BACKUP_IMAGE : unit === 'migrate' ? MIGRATE_IMAGE : imageName(unit),
      newName: newName(unit),
      newTag,
    }))

  files['infra/k8s/overlays/small/kustomization.yaml'] = yamlFile(
    [
      kustomization({
        resources: ['../../base'],
        patches: [
          {
            target: { kind: 'HorizontalPodAutoscaler' },
            patch: jsonPatch([
              { op: 'replace', path: '/spec/minReplicas', value: SMALL_SCALING.minReplicas },
              { op: 'replace', path: '/spec/maxReplicas', value: SMALL_SCALING.maxReplicas },
            ]),
          },
          {
            target: { kind: 'Deployment' },
            patch: jsonPatch([
              { op: 'replace', path: '/spec/template/spec/containers/0/resources', value: RESOURCES.small },
            ]),
          },
          {
            target: { kind: 'PersistentVolumeClaim', name: 'db-backups' },
            patch: jsonPatch([{ op: 'replace', path: '/spec/resources/requests/storage', value: '5Gi' }]),
          },
        ],
        // One image for every function, built on the node itself: `docker build -t commerce-functions .`
        // (and `--target backup -t commerce-backup`).
        images: images((unit) => (unit === 'backup' ? BACKUP_IMAGE : 'commerce-functions'), 'latest'),
      }),
    ],
    'One node (k3s, kind, minikube, Docker Desktop): one pod per function, no KEDA, small requests.',
  )
  files['infra/k8s/overlays/production/kustomization.yaml'] = yamlFile(
    [
      kustomization({
        // Here as well as in the base: the component's resources come after the base's namespace is set.
        namespace: NAMESPACE,
        resources: ['../../base'],
        components: ['../../components/keda'],
      }),
    ],
    'Several zones, KEDA for the workers. CD sets the images (registry and commit tag) on top of this overlay.',
  )
  return files
}
