import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir, userInfo } from 'node:os'
import { join } from 'node:path'
import mysql from 'mysql2/promise'
import { freePort } from './own-redis'

/**
 * For tests only: a mariadbd of the test's own, with a binary log, on a kernel-chosen port and a data
 * folder under the temp dir, removed on stop. For what the machine's shared MariaDB may not have
 * switched on (point-in-time recovery needs log_bin).
 */
export type OwnMariaDb = { port: number; url(database: string): string; stop(): Promise<void> }

const find = (name: string) =>
  [`/usr/sbin/${name}`, `/usr/bin/${name}`].find((path) => existsSync(path)) ??
  (spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).stdout.trim() || undefined)

/** Why an own server cannot be started here, or undefined when it can. */
export function ownMariaDbUnavailable(): string | undefined {
  const missing = ['mariadbd', 'mariadb-install-db'].filter((tool) => !find(tool))
  return missing.length > 0
    ? `${missing.join(' and ')} not installed (apt-get install mariadb-server)`
    : undefined
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

export async function startOwnMariaDb(): Promise<OwnMariaDb> {
  const mariadbd = find('mariadbd')
  const installDb = find('mariadb-install-db')
  if (!mariadbd || !installDb) throw new Error(ownMariaDbUnavailable())
  const dir = await mkdtemp(join(tmpdir(), 'commerce-mariadb-'))
  const data = join(dir, 'data')
  // mariadbd refuses to run as root unless told to; as anyone else, --user is ignored.
  const user = `--user=${userInfo().username}`
  const install = spawnSync(
    installDb,
    [
      '--no-defaults',
      `--datadir=${data}`,
      '--auth-root-authentication-method=normal',
      '--skip-test-db',
      user,
    ],
    { encoding: 'utf8' },
  )
  if (install.status !== 0) {
    await rm(dir, { recursive: true, force: true })
    throw new Error(`mariadb-install-db failed: ${install.stderr || install.stdout}`)
  }
  const port = await freePort()
  let log = ''
  const child: ChildProcess = spawn(
    mariadbd,
    [
      '--no-defaults',
      `--datadir=${data}`,
      `--socket=${join(dir, 'mariadb.sock')}`,
      `--pid-file=${join(dir, 'mariadb.pid')}`,
      `--port=${port}`,
      '--bind-address=127.0.0.1',
      '--skip-name-resolve',
      user,
      '--server-id=1',
      `--log-bin=${join(data, 'binlog')}`,
      '--binlog-format=ROW',
      '--innodb-buffer-pool-size=32M',
      '--character-set-server=utf8mb4',
      '--collation-server=utf8mb4_unicode_ci',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  )
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    log = (log + chunk).slice(-4000)
  })
  const exited = once(child, 'exit')
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM')
      await exited
    }
    await rm(dir, { recursive: true, force: true })
  }
  // Ready is when it answers a query: the explicit signal, polled.
  for (let waited = 0; ; waited += 100) {
    if (child.exitCode !== null) {
      await stop()
      throw new Error(`mariadbd exited during start:\n${log}`)
    }
    try {
      const connection = await mysql.createConnection({ host: '127.0.0.1', port, user: 'root' })
      await connection.end()
      break
    } catch (error) {
      if (waited > 30_000) {
        await stop()
        throw new Error(`mariadbd on port ${port} did not answer within 30 s: ${String(error)}\n${log}`)
      }
      await sleep(100)
    }
  }
  return { port, url: (database) => `mysql://root@127.0.0.1:${port}/${database}`, stop }
}
