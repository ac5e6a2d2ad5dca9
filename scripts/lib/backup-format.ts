import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import * as v from 'valibot'
import { ToolError } from './mariadb-tools'

/**
 * What `npm run db:backup` writes into its folder: the gzipped dump and, last, backup.json. A folder
 * without backup.json is an unfinished backup and is never restored.
 */
export const MANIFEST_FILE = 'backup.json'
export const DUMP_FILE = 'dump.sql.gz'

const Manifest = v.object({
  format: v.literal(1),
  database: v.pipe(v.string(), v.regex(/^[A-Za-z0-9_]{1,64}$/)),
  /** When the dump's transaction started: its consistent snapshot is of this moment. */
  startedAt: v.pipe(v.string(), v.isoTimestamp()),
  finishedAt: v.pipe(v.string(), v.isoTimestamp()),
  server: v.object({ version: v.string(), binlogFormat: v.nullable(v.string()) }),
  /** Where the binary log stood at the snapshot: point-in-time recovery replays from here. */
  binlog: v.nullable(
    v.object({
      file: v.pipe(v.string(), v.regex(/^[A-Za-z0-9._-]+$/)),
      position: v.pipe(v.number(), v.integer(), v.minValue(4)),
      gtid: v.nullable(v.string()),
    }),
  ),
  dump: v.object({
    file: v.literal(DUMP_FILE),
    bytes: v.pipe(v.number(), v.integer(), v.minValue(0)),
    sha256: v.pipe(v.string(), v.regex(/^[0-9a-f]{64}$/)),
  }),
})

export type BackupManifest = v.InferOutput<typeof Manifest>

export async function readManifest(dir: string): Promise<BackupManifest> {
  let text: string
  try {
    text = await readFile(join(dir, MANIFEST_FILE), 'utf8')
  } catch {
    throw new ToolError(`${dir} holds no ${MANIFEST_FILE}: not a finished backup`)
  }
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    throw new ToolError(`${join(dir, MANIFEST_FILE)} is not JSON`)
  }
  const result = v.safeParse(Manifest, json)
  if (!result.success) {
    const issues = result.issues.map(
      (i) => `${i.path?.map((p) => String(p.key)).join('.') ?? ''}: ${i.message}`,
    )
    throw new ToolError(`${join(dir, MANIFEST_FILE)} is not a backup manifest (${issues.join('; ')})`)
  }
  return result.output
}
