import { once } from 'node:events'
import { createServer, type Socket } from 'node:net'
import { sql } from 'drizzle-orm'
import mysql from 'mysql2/promise'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { TEST_ENV } from '../testing/env'
import { waitFor } from '../testing/events'
import { createDatabase, type Db } from './client'

/**
 * The pool settings that the connection budget relies on, against the real MariaDB: a pool opens
 * nothing until it is used, never more than its limit, and gives idle connections back.
 */

const url = TEST_ENV.DATABASE_URL as string
let admin: mysql.Connection

beforeAll(async () => {
  admin = await mysql.createConnection({ uri: url })
})

afterAll(async () => {
  await admin?.end()
})

/** The connection ids that `n` concurrent queries ran on. */
async function connectionIdsOf(db: Db, n: number): Promise<Set<number>> {
  const results = await Promise.all(
    Array.from({ length: n }, () => db.execute(sql`SELECT CONNECTION_ID() AS id`)),
  )
  return new Set(results.map((result) => Number((result as unknown as [Array<{ id: number }>])[0][0]?.id)))
}

async function stillConnected(ids: Set<number>): Promise<number[]> {
  const [rows] = await admin.query<mysql.RowDataPacket[]>(
    'SELECT ID AS id FROM information_schema.PROCESSLIST WHERE ID IN (?)',
    [[...ids]],
  )
  return rows.map((row) => Number(row.id))
}

describe('createDatabase pools', () => {
  it('opens no connection before the first query', async () => {
    const accepted: Socket[] = []
    const server = createServer((socket) => accepted.push(socket))
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    const address = server.address()
    const port = typeof address === 'object' && address ? address.port : 0
    const database = createDatabase({
      url: `mysql://root@127.0.0.1:${port}/nothing`,
      replicaUrl: `mysql://root@127.0.0.1:${port}/nothing`,
    })
    // Nothing happened on the wire: creating the pools (what every process does at start) is free.
    expect(accepted).toHaveLength(0)
    await database.close()
    expect(accepted).toHaveLength(0)
    server.close()
  })

  it('never holds more than its limits, primary and replica each', async () => {
    const database = createDatabase({ url, replicaUrl: url, connectionLimit: 3, replicaConnectionLimit: 2 })
    try {
      // Far more concurrent queries than connections: the rest wait for a free one.
      expect((await connectionIdsOf(database.db, 30)).size).toBe(3)
      expect((await connectionIdsOf(database.dbRead, 30)).size).toBe(2)
    } finally {
      await database.close()
    }
  })

  it('closes connections that stay idle', async () => {
    const database = createDatabase({ url, connectionLimit: 4, idleTimeoutMs: 500 })
    try {
      const ids = await connectionIdsOf(database.db, 20)
      expect(ids.size).toBe(4)
      expect(await stillConnected(ids)).toHaveLength(4)
      await waitFor('the idle connections to be closed', async () => (await stillConnected(ids)).length === 0)
      // Used again, the pool opens what it needs anew.
      expect((await connectionIdsOf(database.db, 2)).size).toBeGreaterThan(0)
    } finally {
      await database.close()
    }
  })
})
