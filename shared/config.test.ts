import { describe, expect, it } from 'vitest'
import { ConfigError, DEVELOPMENT_JWT_SECRET, loadConfig } from './config'

const messageOf = (env: NodeJS.ProcessEnv) => {
  try {
    loadConfig(env)
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError)
    return (error as Error).message
  }
  throw new Error('expected loadConfig to throw')
}

describe('loadConfig', () => {
  it('applies the documented defaults', () => {
    expect(loadConfig({})).toMatchObject({
      port: 8080,
      databaseUrl: 'mysql://root@127.0.0.1:3306/commerce',
      databaseReplicaUrl: undefined,
      databasePoolSize: 5,
      databaseReplicaPoolSize: 2,
      redisUrl: 'redis://127.0.0.1:6379',
      rabbitmqUrl: 'amqp://guest:guest@127.0.0.1:5672',
      jwtSecret: DEVELOPMENT_JWT_SECRET,
      jwtSecretPrevious: undefined,
      businessTimeZone: 'Asia/Seoul',
      productCacheTtlSeconds: 3600,
      popularCacheTtlSeconds: 600,
      logLevel: 'info',
    })
  })

  it('names every bad variable and never echoes its value', () => {
    const message = messageOf({
      PORT: 'eighty',
      DATABASE_URL: 'postgres://secret-password@db/x',
      BUSINESS_TIMEZONE: 'Mars/Olympus',
      LOG_LEVEL: 'loud',
    })
    for (const name of ['PORT', 'DATABASE_URL', 'BUSINESS_TIMEZONE', 'LOG_LEVEL'])
      expect(message).toContain(name)
    expect(message).not.toContain('secret-password')
  })

  it('refuses the development JWT secret in production', () => {
    expect(messageOf({ NODE_ENV: 'production' })).toContain('JWT_SECRET')
    expect(messageOf({ NODE_ENV: 'production', JWT_SECRET: DEVELOPMENT_JWT_SECRET })).toContain('JWT_SECRET')
    expect(messageOf({ JWT_SECRET: 'short' })).toContain('JWT_SECRET')
    const secret = 'a-production-secret-of-at-least-32-chars'
    expect(loadConfig({ NODE_ENV: 'production', JWT_SECRET: secret }).jwtSecret).toBe(secret)
  })

  it('takes a previous JWT secret with the same rules, never the development default in production', () => {
    const current = 'a-production-secret-of-at-least-32-chars'
    const previous = 'the-secret-before-it-also-32-chars-long'
    expect(loadConfig({ JWT_SECRET: current, JWT_SECRET_PREVIOUS: previous })).toMatchObject({
      jwtSecret: current,
      jwtSecretPrevious: previous,
    })
    expect(loadConfig({ JWT_SECRET_PREVIOUS: '' }).jwtSecretPrevious).toBeUndefined()
    const short = messageOf({ JWT_SECRET_PREVIOUS: 'short-secret-value' })
    expect(short).toContain('JWT_SECRET_PREVIOUS: must be at least 32 characters')
    expect(short).not.toContain('short-secret-value')
    const production = { NODE_ENV: 'production', JWT_SECRET: current }
    expect(messageOf({ ...production, JWT_SECRET_PREVIOUS: DEVELOPMENT_JWT_SECRET })).toContain(
      'JWT_SECRET_PREVIOUS',
    )
    expect(loadConfig({ ...production, JWT_SECRET_PREVIOUS: previous }).jwtSecretPrevious).toBe(previous)
    // Outside production the default is what a developer rotates away from, so it is accepted there.
    expect(
      loadConfig({ JWT_SECRET: current, JWT_SECRET_PREVIOUS: DEVELOPMENT_JWT_SECRET }).jwtSecretPrevious,
    ).toBe(DEVELOPMENT_JWT_SECRET)
  })

  it('reads the pool sizes and refuses one that cannot work', () => {
    expect(loadConfig({ DATABASE_POOL_SIZE: '12', DATABASE_REPLICA_POOL_SIZE: '3' })).toMatchObject({
      databasePoolSize: 12,
      databaseReplicaPoolSize: 3,
    })
    const message = messageOf({ DATABASE_POOL_SIZE: '1', DATABASE_REPLICA_POOL_SIZE: 'many' })
    expect(message).toContain('DATABASE_POOL_SIZE: must be at least 2')
    expect(message).toContain('DATABASE_REPLICA_POOL_SIZE: must be a whole number')
  })

  it('treats empty variables as unset', () => {
    expect(loadConfig({ PORT: '', REDIS_URL: '' })).toMatchObject({
      port: 8080,
      redisUrl: 'redis://127.0.0.1:6379',
    })
  })

  it('bounds the data platform queue and stream, the queue shorter-lived than the stream', () => {
    expect(loadConfig({}).dataPlatform).toEqual({
      streamMaxAgeSeconds: 7 * 24 * 3600,
      streamMaxBytes: 10 * 1024 ** 3,
      queueMaxLength: 100_000,
      queueMaxAgeSeconds: 3 * 24 * 3600,
    })
    expect(loadConfig({ DATA_PLATFORM_QUEUE_MAX_LENGTH: '500' }).dataPlatform.queueMaxLength).toBe(500)
    expect(messageOf({ DATA_PLATFORM_QUEUE_MAX_LENGTH: '0' })).toContain('DATA_PLATFORM_QUEUE_MAX_LENGTH')
    expect(messageOf({ DATA_PLATFORM_STREAM_MAX_BYTES: '1000' })).toContain('DATA_PLATFORM_STREAM_MAX_BYTES')
    // What the queue drops at its age bound must still be replayable from the stream.
    expect(
      messageOf({
        DATA_PLATFORM_QUEUE_MAX_AGE_SECONDS: '86400',
        DATA_PLATFORM_STREAM_MAX_AGE_SECONDS: '86400',
      }),
    ).toContain('DATA_PLATFORM_QUEUE_MAX_AGE_SECONDS')
  })
})
