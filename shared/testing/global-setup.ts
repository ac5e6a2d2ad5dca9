import mysql from 'mysql2/promise'
import { loadConfig } from '../config'
import { createRedis } from '../redis/client'
import { applyMigrations, redisKeyPrefix } from '../runtime/deps'
import { TEST_ENV } from './env'

/**
 * Once per test run: a new test database, migrated by the same path as npm start, and none of the Redis
 * keys of the previous one (coupon state, caches, queues), which would otherwise describe rows whose ids
 * the new database hands out again. Tests still never rely on an empty database: files run side by side.
 */
export default async function setup() {
  const config = loadConfig({ ...process.env, ...TEST_ENV })
  const url = new URL(config.databaseUrl)
  const database = url.pathname.slice(1)
  url.pathname = '/'
  const server = await mysql.createConnection({ uri: url.toString() })
  try {
    await server.query(`DROP DATABASE IF EXISTS \`${database}\``)
  } finally {
    await server.end()
  }
  const redis = createRedis(config.redisUrl)
  try {
    await redis.connect()
    const pattern = `${redisKeyPrefix(config.databaseUrl)}*`
    let cursor = '0'
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000)
      if (keys.length > 0) await redis.unlink(...keys)
      cursor = next
    } while (cursor !== '0')
  } finally {
    redis.disconnect()
  }
  await applyMigrations(config)
}
