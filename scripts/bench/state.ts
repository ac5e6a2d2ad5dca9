import { Redis } from 'ioredis'
import mysql from 'mysql2/promise'
import { redisKeyPrefix } from '../../shared/runtime/deps'

export const databaseNameOf = (databaseUrl: string) =>
  decodeURIComponent(new URL(databaseUrl).pathname.slice(1))

const serverUrl = (databaseUrl: string) => {
  const server = new URL(databaseUrl)
  server.pathname = '/'
  return server.toString()
}

/**
 * The bench's database and Redis namespace start empty every run, so runs compare like with like (the
 * service's `npm start` then creates and migrates the database, as it would for a new user).
 */
export async function resetBenchState(databaseUrl: string, redisUrl: string): Promise<void> {
  const connection = await mysql.createConnection({ uri: serverUrl(databaseUrl) })
  try {
    await connection.query(`DROP DATABASE IF EXISTS \`${databaseNameOf(databaseUrl).replaceAll('`', '')}\``)
  } finally {
    await connection.end()
  }
  const redis = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 })
  try {
    await redis.connect()
    const prefix = redisKeyPrefix(databaseUrl)
    let cursor = '0'
    // Bounded: 10,000 rounds of 1,000 keys is far more than the bench ever leaves behind.
    for (let round = 0; round < 10_000; round++) {
      const [nextCursor, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1_000)
      if (keys.length > 0) await redis.unlink(...keys)
      cursor = nextCursor
      if (cursor === '0') break
    }
  } finally {
    redis.disconnect()
  }
}

/**
 * The hot-row ceiling alone holds 100 connections, beside the service's pools and whatever else uses the
 * server: MariaDB's default max_connections (151) is too few. When it is below `needed`, it is raised for
 * the run (SET GLOBAL, which a restart forgets anyway) and the returned function puts it back.
 */
export async function ensureMaxConnections(
  databaseUrl: string,
  needed: number,
): Promise<{ before: number; during: number; restore(): Promise<void> }> {
  const connection = await mysql.createConnection({ uri: serverUrl(databaseUrl) })
  try {
    const [rows] = await connection.query<mysql.RowDataPacket[]>('SELECT @@GLOBAL.max_connections AS n')
    const before = Number(rows[0]?.n ?? 0)
    if (before >= needed) return { before, during: before, restore: async () => undefined }
    await connection.query('SET GLOBAL max_connections = ?', [needed])
    return {
      before,
      during: needed,
      async restore() {
        const again = await mysql.createConnection({ uri: serverUrl(databaseUrl) })
        try {
          await again.query('SET GLOBAL max_connections = ?', [before])
        } finally {
          await again.end()
        }
      },
    }
  } finally {
    await connection.end()
  }
}
