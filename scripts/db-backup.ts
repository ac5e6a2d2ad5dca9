import { createHash } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { mkdir, readdir, rename, rm, stat, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { PassThrough, Transform } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { createGzip } from 'node:zlib'
import { loadConfig } from '../shared/config'
import { type BackupManifest, DUMP_FILE, MANIFEST_FILE } from './lib/backup-format'
import { query, runTool, serverFrom, ToolError, withOptionFile } from './lib/mariadb-tools'

const usage = `Usage:
  npm run db:backup -- --out DIR
  npm run db:backup -- --root DIR [--keep-days 14] [--daily-at HH:MM]

Takes a consistent dump of DATABASE_URL's database (mariadb-dump --single-transaction, no table locks)
and records the binary log position of its snapshot, for point-in-time restores (npm run db:restore).
--out writes the backup into DIR (new or empty). --root writes it into DIR/<UTC time stamp>/ and then
deletes the backups there older than --keep-days, always keeping the newest; with --daily-at it stays
running and does this every day at that UTC time (the compose service).`

/** The dump's head carries the snapshot's binlog position as comments (--master-data=2 --gtid). */
const BINLOG_POSITION = /MASTER_LOG_FILE='([^']+)', MASTER_LOG_POS=(\d+)/
const GTID_POSITION = /gtid_slave_pos='([^']*)'/
const HEAD_BYTES = 256 * 1024

const log = (line: string) => process.stdout.write(`${line}\n`)

/** Counts and hashes what passes through, for the manifest. */
function digest() {
  const hash = createHash('sha256')
  let bytes = 0
  const stream = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      hash.update(chunk)
      bytes += chunk.length
      done(null, chunk)
    },
  })
  return { stream, result: () => ({ bytes, sha256: hash.digest('hex') }) }
}

export async function backupDatabase(databaseUrl: string, dir: string): Promise<BackupManifest> {
  const server = serverFrom(databaseUrl)
  await mkdir(dir, { recursive: true })
  if ((await readdir(dir)).length > 0)
    throw new ToolError(`${dir} is not empty; a backup goes into a new folder`)

  return withOptionFile(server, async (optionFile) => {
    const [settings] = await query(optionFile, 'SELECT @@log_bin, @@binlog_format, @@version')
    const [logBin, binlogFormat, version] = settings ?? []
    const binlogOn = logBin === '1'
    if (!binlogOn) {
      log('warning: the server writes no binary log, so this backup cannot be rolled forward (--until)')
    } else if (binlogFormat !== 'ROW') {
      log(`warning: binlog_format is ${binlogFormat}; point-in-time restores into another name need ROW`)
    }

    const partial = join(dir, `.${DUMP_FILE}.partial`)
    const dumped = new PassThrough()
    let head = ''
    dumped.on('data', (chunk: Buffer) => {
      if (head.length < HEAD_BYTES) head += chunk.toString('utf8')
    })
    const compressed = digest()
    const startedAt = new Date()
    await Promise.all([
      runTool(
        'mariadb-dump',
        [
          `--defaults-extra-file=${optionFile}`,
          // One REPEATABLE READ transaction: a consistent snapshot without locking the tables.
          '--single-transaction',
          '--quick',
          '--routines',
          '--triggers',
          '--events',
          '--hex-blob',
          '--tz-utc',
          // The snapshot's binlog position (MariaDB reads it from the same snapshot, without a global lock).
          ...(binlogOn ? ['--master-data=2', '--gtid'] : []),
          // The database alone (no CREATE DATABASE or USE), so that it restores under any name.
          server.database,
        ],
        { stdout: dumped },
      ),
      pipeline(dumped, createGzip(), compressed.stream, createWriteStream(partial, { mode: 0o600 })),
    ])

    let binlog: BackupManifest['binlog'] = null
    if (binlogOn) {
      const position = head.match(BINLOG_POSITION)
      if (!position) throw new ToolError('mariadb-dump wrote no binlog position; the backup is incomplete')
      binlog = {
        file: position[1] as string,
        position: Number(position[2]),
        gtid: head.match(GTID_POSITION)?.[1] ?? null,
      }
    }
    const manifest: BackupManifest = {
      format: 1,
      database: server.database,
      startedAt: startedAt.toISOString(),
      finishedAt: new Date().toISOString(),
      server: { version: version ?? 'unknown', binlogFormat: binlogOn ? (binlogFormat ?? null) : null },
      binlog,
      dump: { file: DUMP_FILE, ...compressed.result() },
    }
    await rename(partial, join(dir, DUMP_FILE))
    // Written last: a folder with a manifest is a finished backup.
    await writeFile(join(dir, `.${MANIFEST_FILE}.partial`), `${JSON.stringify(manifest, null, 2)}\n`)
    await rename(join(dir, `.${MANIFEST_FILE}.partial`), join(dir, MANIFEST_FILE))
    return manifest
  })
}

/** 2026-11-29T03:30:00.123Z → 20261129T033000Z: sortable, and safe in any file system. */
export const stampOf = (time: Date) =>
  time
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d{3}/, '')
const STAMP = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/
const timeOfStamp = (name: string) => {
  const m = name.match(STAMP)
  return m ? Date.parse(`${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}Z`) : undefined
}

/**
 * Deletes the stamped backup folders under `root` older than `keepDays`, but never the newest finished
 * one (a broken schedule must not leave no backup at all). Returns the names it deleted.
 */
export async function pruneBackups(root: string, keepDays: number, now = new Date()): Promise<string[]> {
  const entries = (await readdir(root)).flatMap((name) => {
    const time = timeOfStamp(name)
    return time === undefined ? [] : [{ name, time }]
  })
  const finished = await Promise.all(
    entries.map((entry) =>
      stat(join(root, entry.name, MANIFEST_FILE)).then(
        () => true,
        () => false,
      ),
    ),
  )
  const newestFinished = entries
    .filter((_, i) => finished[i])
    .sort((a, b) => b.time - a.time)
    .at(0)?.name
  const cutoff = now.getTime() - keepDays * 86_400_000
  const expired = entries.filter((entry) => entry.time < cutoff && entry.name !== newestFinished)
  for (const entry of expired) await rm(join(root, entry.name), { recursive: true, force: true })
  return expired.map((entry) => entry.name).sort()
}

async function backupInto(databaseUrl: string, root: string, keepDays: number) {
  const dir = join(root, stampOf(new Date()))
  const manifest = await backupDatabase(databaseUrl, dir)
  log(describe(dir, manifest))
  const removed = await pruneBackups(root, keepDays)
  if (removed.length > 0) log(`removed backups older than ${keepDays} days: ${removed.join(', ')}`)
}

const describe = (dir: string, m: BackupManifest) =>
  `backup of ${m.database} written to ${dir} (${(m.dump.bytes / 1024 / 1024).toFixed(1)} MiB compressed, ` +
  `${m.binlog ? `binlog ${m.binlog.file}:${m.binlog.position}` : 'no binlog position'})`

/** Milliseconds from `now` to the next HH:MM in UTC. */
export function untilNext(time: string, now = new Date()): number {
  const [hours, minutes] = time.split(':').map(Number)
  const next = new Date(now)
  next.setUTCHours(hours ?? 0, minutes ?? 0, 0, 0)
  if (next.getTime() <= now.getTime()) next.setUTCDate(next.getUTCDate() + 1)
  return next.getTime() - now.getTime()
}

function runDaily(databaseUrl: string, root: string, keepDays: number, at: string) {
  let timer: NodeJS.Timeout | undefined
  const schedule = () => {
    const wait = untilNext(at)
    log(`next backup at ${new Date(Date.now() + wait).toISOString()}`)
    timer = setTimeout(() => {
      backupInto(databaseUrl, root, keepDays)
        .catch((error: unknown) =>
          log(`backup failed: ${error instanceof Error ? error.message : String(error)}`),
        )
        .finally(schedule)
    }, wait)
  }
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      clearTimeout(timer)
      process.exit(0)
    })
  }
  schedule()
}

async function main() {
  const { values } = (() => {
    try {
      return parseArgs({
        options: {
          out: { type: 'string' },
          root: { type: 'string' },
          'keep-days': { type: 'string', default: '14' },
          'daily-at': { type: 'string' },
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
  if ((values.out === undefined) === (values.root === undefined)) throw new UsageError('give --out or --root')
  if (!/^[1-9]\d{0,3}$/.test(values['keep-days']))
    throw new UsageError('--keep-days must be a whole number of days')
  const at = values['daily-at']
  if (at !== undefined && (!/^([01]\d|2[0-3]):[0-5]\d$/.test(at) || values.root === undefined)) {
    throw new UsageError('--daily-at takes HH:MM (UTC) and needs --root')
  }
  // Only DATABASE_URL is read; loadConfig validates it as every other entry point does.
  const { databaseUrl } = loadConfig({ DATABASE_URL: process.env.DATABASE_URL })
  const keepDays = Number(values['keep-days'])
  if (values.out !== undefined) {
    const dir = resolve(values.out)
    log(describe(dir, await backupDatabase(databaseUrl, dir)))
  } else if (at !== undefined) {
    runDaily(databaseUrl, resolve(values.root as string), keepDays, at)
  } else {
    await backupInto(databaseUrl, resolve(values.root as string), keepDays)
  }
}

class UsageError extends Error {}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    await main()
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error)
    process.stderr.write(`db:backup: ${message}\n`)
    if (error instanceof UsageError) process.stderr.write(`\n${usage}\n`)
    process.exit(error instanceof UsageError ? 2 : 1)
  }
}
