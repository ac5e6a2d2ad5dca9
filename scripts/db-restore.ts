import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { join, resolve } from 'node:path'
import { PassThrough } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { createGunzip } from 'node:zlib'
import { loadConfig } from '../shared/config'
import { type BackupManifest, readManifest } from './lib/backup-format'
import {
  DATABASE_NAME,
  query,
  runTool,
  type Server,
  serverFrom,
  ToolError,
  UNLOGGED_SESSION,
  withOptionFile,
} from './lib/mariadb-tools'

const usage = `Usage: npm run db:restore -- --from DIR --into NAME [--until TIME]

Restores the backup in DIR (npm run db:backup) into a new database NAME on DATABASE_URL's server. With
--until (ISO-8601 with a time zone, e.g. 2026-11-29T03:12:00Z) it then replays the server's binary logs
from the backup's position up to that time. Binary log times have whole seconds: TIME is rounded down
to its second, and what was written in that second is not replayed. NAME must not exist yet.`

const log = (line: string) => process.stdout.write(`${line}\n`)

export type RestoreOptions = { from: string; into: string; until?: Date }

/** `--until` as a Date: an ISO-8601 time with a zone (a bare local time would mean a different moment per machine). */
export function parseUntil(text: string): Date {
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/.test(text)) {
    throw new ToolError(
      `--until must be an ISO-8601 time with a zone, like 2026-11-29T03:12:00Z (got "${text}")`,
    )
  }
  const time = new Date(text)
  if (Number.isNaN(time.getTime())) throw new ToolError(`--until is not a valid time: "${text}"`)
  return time
}

/** mariadb-binlog's --stop-datetime, read in the zone of its TZ: we run it in UTC. */
const binlogTime = (time: Date) => time.toISOString().slice(0, 19).replace('T', ' ')

async function verifyDump(dir: string, manifest: BackupManifest) {
  const hash = createHash('sha256')
  let bytes = 0
  for await (const chunk of createReadStream(join(dir, manifest.dump.file)) as AsyncIterable<Buffer>) {
    hash.update(chunk)
    bytes += chunk.length
  }
  if (bytes !== manifest.dump.bytes || hash.digest('hex') !== manifest.dump.sha256) {
    throw new ToolError(`${join(dir, manifest.dump.file)} does not match its manifest (damaged or changed)`)
  }
}

async function replayBinlog(optionFile: string, manifest: BackupManifest, into: string, until: Date) {
  const binlog = manifest.binlog
  if (!binlog) throw new ToolError('this backup recorded no binlog position (the server had no binary log)')
  const statements = new PassThrough()
  await Promise.all([
    runTool(
      'mariadb-binlog',
      [
        `--defaults-extra-file=${optionFile}`,
        '--read-from-remote-server',
        '--to-last-log',
        `--start-position=${binlog.position}`,
        `--stop-datetime=${binlogTime(until)}`,
        // MariaDB filters by the original name before it rewrites (unlike MySQL, which filters after):
        // events of the backed-up database only, applied to the restored one.
        `--database=${manifest.database}`,
        `--rewrite-db=${manifest.database}->${into}`,
        binlog.file,
      ],
      { stdout: statements, env: { TZ: 'UTC' } },
    ),
    runTool('mariadb', [`--defaults-extra-file=${optionFile}`, UNLOGGED_SESSION, '--binary-mode'], {
      stdin: statements,
    }),
  ])
}

async function databaseExists(optionFile: string, name: string) {
  const rows = await query(
    optionFile,
    `SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '${name}'`,
  )
  return rows[0]?.[0] !== '0'
}

export async function restoreDatabase(databaseUrl: string, options: RestoreOptions): Promise<BackupManifest> {
  if (!DATABASE_NAME.test(options.into)) {
    throw new ToolError(`--into must be a database name of letters, digits and _ (got "${options.into}")`)
  }
  const manifest = await readManifest(options.from)
  const until = options.until
  if (until) {
    if (!manifest.binlog) {
      throw new ToolError(
        'this backup recorded no binlog position (the server had no binary log): --until is impossible',
      )
    }
    if (until.getTime() < Date.parse(manifest.startedAt)) {
      throw new ToolError(
        `--until ${until.toISOString()} is before this backup (${manifest.startedAt}); use an older one`,
      )
    }
  }
  await verifyDump(options.from, manifest)
  const server: Server = serverFrom(databaseUrl)

  await withOptionFile(server, async (optionFile) => {
    if (await databaseExists(optionFile, options.into)) {
      throw new ToolError(`database ${options.into} already exists; restore into a new name`)
    }
    await query(
      optionFile,
      `CREATE DATABASE \`${options.into}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci`,
      [UNLOGGED_SESSION],
    )
    try {
      const sql = new PassThrough()
      await Promise.all([
        pipeline(createReadStream(join(options.from, manifest.dump.file)), createGunzip(), sql),
        runTool(
          'mariadb',
          [
            `--defaults-extra-file=${optionFile}`,
            UNLOGGED_SESSION,
            '--binary-mode',
            `--database=${options.into}`,
          ],
          { stdin: sql },
        ),
      ])
      if (until) await replayBinlog(optionFile, manifest, options.into, until)
    } catch (error) {
      // Half a restore is worse than none: the database we created goes again.
      await query(optionFile, `DROP DATABASE IF EXISTS \`${options.into}\``, [UNLOGGED_SESSION]).catch(
        () => undefined,
      )
      throw error
    }
  })
  return manifest
}

class UsageError extends Error {}

async function main() {
  const { values } = (() => {
    try {
      return parseArgs({
        options: {
          from: { type: 'string' },
          into: { type: 'string' },
          until: { type: 'string' },
          help: { type: 'boolean', short: 'h' },
        },
      })
    } catch (error) {
      throw new UsageError(error instanceof Error ? error.message : String(error))
    }
  })()
  if (values.help) {
    log(usage)
    return
  }
  if (values.from === undefined || values.into === undefined) throw new UsageError('give --from and --into')
  const until = values.until === undefined ? undefined : parseUntil(values.until)
  const { databaseUrl } = loadConfig({ DATABASE_URL: process.env.DATABASE_URL })
  const from = resolve(values.from)
  const manifest = await restoreDatabase(databaseUrl, {
    from,
    into: values.into,
    ...(until ? { until } : {}),
  })
  log(
    `restored ${manifest.database} as of ${manifest.startedAt} into ${values.into}` +
      (until ? `, then replayed its binary log up to ${binlogTime(until)} UTC` : ''),
  )
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    await main()
  } catch (error) {
    process.stderr.write(`db:restore: ${error instanceof Error ? error.message : String(error)}\n`)
    if (error instanceof UsageError) process.stderr.write(`\n${usage}\n`)
    process.exit(error instanceof UsageError ? 2 : 1)
  }
}
