import { availableParallelism } from 'node:os'
import * as v from 'valibot'
import { DATA_PLATFORM_DEFAULTS, type DataPlatformLimits } from './events/topology'

/**
 * MySQL connections per process, to the primary and to the replica. Small by default: one container per
 * function means many processes, and MariaDB's max_connections must hold every pool at once (the
 * connection budget, scripts/connection-budget.ts). A process serving every function (`npm start`'s
 * workers) is given a larger value.
 */
export const DEFAULT_DATABASE_POOL_SIZE = 5
export const DEFAULT_DATABASE_REPLICA_POOL_SIZE = 2
/** Below 2, mysql2 cannot both keep a connection for reuse and release idle ones (shared/db/client.ts). */
export const MIN_DATABASE_POOL_SIZE = 2

/** Used only when NODE_ENV is not production; loadConfig refuses it in production. */
export const DEVELOPMENT_JWT_SECRET = 'dev-only-secret-change-me-0123456789abcdef'

const intVar = (min: number, max: number, fallback: number) =>
  v.pipe(
    v.optional(v.string(), String(fallback)),
    v.regex(/^\d+$/, 'must be a whole number'),
    v.transform(Number),
    v.number(),
    v.minValue(min, `must be at least ${min}`),
    v.maxValue(max, `must be at most ${max}`),
  )

const urlVar = (protocols: readonly string[], fallback?: string) =>
  v.pipe(
    fallback === undefined ? v.string() : v.optional(v.string(), fallback),
    v.check(
      (value) => {
        try {
          return protocols.includes(new URL(value).protocol)
        } catch {
          return false
        }
      },
      `must be a URL starting with ${protocols.join(' or ')}//`,
    ),
  )

/** Below a few segments the size bound would delete what was just written. */
const STREAM_MIN_BYTES = 1_000_000_000

const DEFAULT_TIME_ZONE = 'Asia/Seoul'

/**
 * Checking a zone loads ICU's time zone data into the process (about 8 MB of a function's memory); the
 * default is known to be valid, so only a zone set by the operator is checked.
 */
const isTimeZone = (value: string): boolean => {
  if (value === DEFAULT_TIME_ZONE) return true
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: value })
    return true
  } catch {
    return false
  }
}

const JwtSecret = v.pipe(v.string(), v.minLength(32, 'must be at least 32 characters'))

const EnvSchema = v.object({
  NODE_ENV: v.optional(v.string(), 'development'),
  PORT: intVar(0, 65535, 8080),
  DATABASE_URL: urlVar(['mysql:', 'mariadb:'], 'mysql://root@127.0.0.1:3306/commerce'),
  DATABASE_REPLICA_URL: v.optional(urlVar(['mysql:', 'mariadb:'])),
  DATABASE_POOL_SIZE: intVar(MIN_DATABASE_POOL_SIZE, 1000, DEFAULT_DATABASE_POOL_SIZE),
  DATABASE_REPLICA_POOL_SIZE: intVar(MIN_DATABASE_POOL_SIZE, 1000, DEFAULT_DATABASE_REPLICA_POOL_SIZE),
  REDIS_URL: urlVar(['redis:', 'rediss:'], 'redis://127.0.0.1:6379'),
  RABBITMQ_URL: urlVar(['amqp:', 'amqps:'], 'amqp://guest:guest@127.0.0.1:5672'),
  JWT_SECRET: v.optional(JwtSecret),
  JWT_SECRET_PREVIOUS: v.optional(JwtSecret),
  BUSINESS_TIMEZONE: v.pipe(
    v.optional(v.string(), DEFAULT_TIME_ZONE),
    v.check(isTimeZone, 'must be an IANA time zone'),
  ),
  PRODUCT_CACHE_TTL_SECONDS: intVar(1, 7 * 24 * 3600, 3600),
  POPULAR_CACHE_TTL_SECONDS: intVar(1, 24 * 3600, 600),
  RATE_LIMIT_PER_SECOND: intVar(0, 1_000_000, 50),
  RATE_LIMIT_BURST: intVar(0, 1_000_000, 100),
  LOG_LEVEL: v.optional(v.picklist(['debug', 'info', 'warn', 'error', 'silent']), 'info'),
  WEB_CONCURRENCY: intVar(1, 256, availableParallelism()),
  ACCESS_LOG_SAMPLE_RATE: v.pipe(
    v.optional(v.string(), '1'),
    v.regex(/^(0(\.\d+)?|1(\.0+)?)$/, 'must be a number from 0 to 1'),
    v.transform(Number),
  ),
  DATA_PLATFORM_STREAM_MAX_AGE_SECONDS: intVar(
    3600,
    10 * 365 * 24 * 3600,
    DATA_PLATFORM_DEFAULTS.streamMaxAgeSeconds,
  ),
  DATA_PLATFORM_STREAM_MAX_BYTES: intVar(
    STREAM_MIN_BYTES,
    Number.MAX_SAFE_INTEGER,
    DATA_PLATFORM_DEFAULTS.streamMaxBytes,
  ),
  DATA_PLATFORM_QUEUE_MAX_LENGTH: intVar(1, 100_000_000, DATA_PLATFORM_DEFAULTS.queueMaxLength),
  DATA_PLATFORM_QUEUE_MAX_AGE_SECONDS: intVar(60, 365 * 24 * 3600, DATA_PLATFORM_DEFAULTS.queueMaxAgeSeconds),
})

/** The names of every environment variable the app reads (deployment files are checked against it). */
export const ENV_VARS = Object.keys(EnvSchema.entries)

export type Config = {
  env: string
  port: number
  databaseUrl: string
  databaseReplicaUrl: string | undefined
  databasePoolSize: number
  databaseReplicaPoolSize: number
  redisUrl: string
  rabbitmqUrl: string
  jwtSecret: string
  /**
   * During a rotation, the secret before JWT_SECRET: tokens signed with it are still accepted (never
   * signed with it), so that clients move to new tokens without a 401 (docs/operations.md).
   */
  jwtSecretPrevious: string | undefined
  businessTimeZone: string
  productCacheTtlSeconds: number
  popularCacheTtlSeconds: number
  rateLimitPerSecond: number
  rateLimitBurst: number
  logLevel: 'debug' | 'info' | 'warn' | 'error' | 'silent'
  /** HTTP worker processes of `npm start` (default: the cores available). */
  webConcurrency: number
  /** The share of requests written to the access log (1: every one, 0: none); errors are always logged. */
  accessLogSampleRate: number
  /** Retention of the data platform's stream and bounds of its queue (shared/events/topology.ts). */
  dataPlatform: DataPlatformLimits
}

export class ConfigError extends Error {
  override name = 'ConfigError'
}

/**
 * Reads and validates the environment once at start. Empty strings count as unset, so that
 * `FOO= npm start` falls back to the default instead of failing on an empty value.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const present = Object.fromEntries(
    Object.entries(env).filter(
      ([key, value]) => key in EnvSchema.entries && value !== undefined && value !== '',
    ),
  )
  const result = v.safeParse(EnvSchema, present)
  if (!result.success) {
    const lines = result.issues.map((issue) => {
      const name = issue.path?.map((p) => String(p.key)).join('.') ?? 'environment'
      // Never echo the value: it may be a secret (JWT_SECRET, passwords inside URLs).
      return `  ${name}: ${issue.message}`
    })
    throw new ConfigError(`Invalid configuration:\n${lines.join('\n')}`)
  }
  const e = result.output
  // What the queue drops at its age bound must still be in the stream, for the platform to replay.
  if (e.DATA_PLATFORM_QUEUE_MAX_AGE_SECONDS >= e.DATA_PLATFORM_STREAM_MAX_AGE_SECONDS) {
    throw new ConfigError(
      'Invalid configuration:\n  DATA_PLATFORM_QUEUE_MAX_AGE_SECONDS: must be less than DATA_PLATFORM_STREAM_MAX_AGE_SECONDS',
    )
  }
  const production = e.NODE_ENV === 'production'
  if (production && (e.JWT_SECRET === undefined || e.JWT_SECRET === DEVELOPMENT_JWT_SECRET)) {
    throw new ConfigError(
      'Invalid configuration:\n  JWT_SECRET: must be set to a secret of your own when NODE_ENV=production',
    )
  }
  // Everyone knows the development default: accepting it would let anyone mint a valid token.
  if (production && e.JWT_SECRET_PREVIOUS === DEVELOPMENT_JWT_SECRET) {
    throw new ConfigError(
      'Invalid configuration:\n  JWT_SECRET_PREVIOUS: must not be the development default when NODE_ENV=production',
    )
  }
  return {
    env: e.NODE_ENV,
    port: e.PORT,
    databaseUrl: e.DATABASE_URL,
    databaseReplicaUrl: e.DATABASE_REPLICA_URL,
    databasePoolSize: e.DATABASE_POOL_SIZE,
    databaseReplicaPoolSize: e.DATABASE_REPLICA_POOL_SIZE,
    redisUrl: e.REDIS_URL,
    rabbitmqUrl: e.RABBITMQ_URL,
    jwtSecret: e.JWT_SECRET ?? DEVELOPMENT_JWT_SECRET,
    jwtSecretPrevious: e.JWT_SECRET_PREVIOUS,
    businessTimeZone: e.BUSINESS_TIMEZONE,
    productCacheTtlSeconds: e.PRODUCT_CACHE_TTL_SECONDS,
    popularCacheTtlSeconds: e.POPULAR_CACHE_TTL_SECONDS,
    rateLimitPerSecond: e.RATE_LIMIT_PER_SECOND,
    rateLimitBurst: e.RATE_LIMIT_BURST,
    logLevel: e.LOG_LEVEL,
    accessLogSampleRate: e.ACCESS_LOG_SAMPLE_RATE,
    webConcurrency: e.WEB_CONCURRENCY,
    dataPlatform: {
      streamMaxAgeSeconds: e.DATA_PLATFORM_STREAM_MAX_AGE_SECONDS,
      streamMaxBytes: e.DATA_PLATFORM_STREAM_MAX_BYTES,
      queueMaxLength: e.DATA_PLATFORM_QUEUE_MAX_LENGTH,
      queueMaxAgeSeconds: e.DATA_PLATFORM_QUEUE_MAX_AGE_SECONDS,
    },
  }
}

/** A URL with its password masked, for messages that tell the operator where we looked. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url)
    if (u.password) u.password = '***'
    return u.toString()
  } catch {
    return '(unparseable URL)'
  }
}
