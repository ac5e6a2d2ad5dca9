import { spawn } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Readable, Writable } from 'node:stream'

/**
 * The MariaDB command-line tools (mariadb, mariadb-dump, mariadb-binlog) driven from DATABASE_URL, for
 * the backup and restore scripts. The password goes to the tools in an option file only this process can
 * read, never on a command line (which `ps` shows to every user of the machine).
 */

export type Server = { host: string; port: number; user: string; password: string; database: string }

/** A database name we are willing to put between backticks and into tool options. */
export const DATABASE_NAME = /^[A-Za-z0-9_]{1,64}$/

export function serverFrom(databaseUrl: string): Server {
  const url = new URL(databaseUrl)
  const database = decodeURIComponent(url.pathname.replace(/^\//, ''))
  if (!DATABASE_NAME.test(database)) {
    throw new ToolError(`DATABASE_URL must name a database of letters, digits and _ (got "${database}")`)
  }
  return {
    host: url.hostname,
    port: url.port === '' ? 3306 : Number(url.port),
    user: decodeURIComponent(url.username),
    password: decodeURIComponent(url.password),
    database,
  }
}

/** A failure the operator can act on: printed as its message alone. */
export class ToolError extends Error {
  override name = 'ToolError'
}

const optionValue = (value: string) => `"${value.replaceAll('\\', '\\\\').replaceAll('"', '\\"')}"`

/**
 * Runs `task` with the path of a [client] option file for `server` (mode 0600, in a private temporary
 * folder, removed afterwards). Every tool reads the [client] group, and protocol=TCP keeps "localhost"
 * from meaning the local socket, as it does for mysql2.
 */
export async function withOptionFile<T>(server: Server, task: (file: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'commerce-db-'))
  const file = join(dir, 'client.cnf')
  try {
    const lines = [
      '[client]',
      `host=${optionValue(server.host)}`,
      `port=${server.port}`,
      `user=${optionValue(server.user)}`,
      ...(server.password ? [`password=${optionValue(server.password)}`] : []),
      'protocol=TCP',
    ]
    await writeFile(file, `${lines.join('\n')}\n`, { mode: 0o600 })
    return await task(file)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

export type RunOptions = {
  stdin?: Readable
  /** Where stdout goes; without it, stdout is collected and returned. */
  stdout?: Writable
  env?: Record<string, string>
}

/** Runs a tool to completion; a non-zero exit is a ToolError carrying the tool's stderr. */
export function runTool(command: string, args: string[], options: RunOptions = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env: { ...process.env, ...options.env } })
    let stdout = ''
    let stderr = ''
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk
    })
    if (options.stdout) child.stdout.pipe(options.stdout)
    else child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk))
    // The tool stopping early (an SQL error) closes its stdin; its exit code says why.
    child.stdin.on('error', () => undefined)
    if (options.stdin) {
      options.stdin.on('error', (error) => {
        child.kill()
        reject(error)
      })
      options.stdin.pipe(child.stdin)
    } else {
      child.stdin.end()
    }
    child.on('error', (error: NodeJS.ErrnoException) => {
      reject(
        error.code === 'ENOENT'
          ? new ToolError(`${command} is not installed (Debian: apt-get install mariadb-client)`)
          : error,
      )
    })
    child.on('close', (code) => {
      if (code === 0) resolve(stdout)
      else reject(new ToolError(`${command} exited with ${code}: ${stderr.trim().slice(0, 2000)}`))
    })
  })
}

/** One SQL statement through the mariadb client; rows as arrays of strings (tab-separated, no header). */
export async function query(optionFile: string, sql: string, extra: string[] = []): Promise<string[][]> {
  const out = await runTool('mariadb', [
    `--defaults-extra-file=${optionFile}`,
    '--batch',
    '--skip-column-names',
    ...extra,
    '-e',
    sql,
  ])
  return out
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => line.split('\t'))
}

/**
 * Client options for writing a restore: its statements stay out of the server's binary log, so replicas
 * do not follow a scratch restore and a later point-in-time restore never replays one restore into another.
 */
export const UNLOGGED_SESSION = '--init-command=SET SESSION sql_log_bin = 0'
