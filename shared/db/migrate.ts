import { fileURLToPath } from 'node:url'
import { drizzle } from 'drizzle-orm/mysql2'
import { migrate } from 'drizzle-orm/mysql2/migrator'
import mysql from 'mysql2/promise'

export const MIGRATIONS_FOLDER = fileURLToPath(new URL('./migrations', import.meta.url))

/** Creates the database named in the URL when it is missing, then applies every pending migration. */
export async function migrateDatabase(
  databaseUrl: string,
  migrationsFolder = MIGRATIONS_FOLDER,
): Promise<void> {
  const url = new URL(databaseUrl)
  const database = decodeURIComponent(url.pathname.replace(/^\//, ''))
  if (!/^[A-Za-z0-9_$-]{1,64}$/.test(database)) {
    throw new Error(`DATABASE_URL must name a database (letters, digits, _ $ -), got "${database}"`)
  }
  url.pathname = '/'
  const server = await mysql.createConnection({ uri: url.toString(), connectTimeout: 5_000 })
  try {
    await server.query(
      `CREATE DATABASE IF NOT EXISTS \`${database}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci`,
    )
  } finally {
    await server.end()
  }
  const connection = await mysql.createConnection({
    uri: databaseUrl,
    connectTimeout: 5_000,
    multipleStatements: false,
  })
  try {
    // Several containers may start at once: a named lock lets exactly one apply migrations at a time.
    await connection.query("SELECT GET_LOCK('commerce_migrations', 60)")
    await migrate(drizzle({ client: connection }), { migrationsFolder })
    await connection.query("SELECT RELEASE_LOCK('commerce_migrations')")
  } finally {
    await connection.end()
  }
}
