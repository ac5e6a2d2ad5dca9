import mysql from 'mysql2'

type Format = (sql: string, values: unknown[], stringifyObjects: boolean, timezone: string) => string

/**
 * SQL text with its `?` placeholders filled by mysql2's escaping (values are never concatenated), dates
 * in UTC as every session runs (shared/db/client.ts). For the paths that send statements of their own.
 */
export const sqlText = (sql: string, values: unknown[]): string =>
  (mysql.format as unknown as Format)(sql, values, false, 'Z')
