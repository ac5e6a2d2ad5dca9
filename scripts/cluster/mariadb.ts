import { execFileSync } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import mysql from 'mysql2/promise'
import { type Started, spawnDetached, tail, waitUntil } from './processes'

/**
 * The cluster's own MariaDB primary and replica: two mariadbd from the Debian package, each with its
 * data folder under the state folder, started from the same option files Compose mounts
 * (infra/mysql/server.cnf, replica.cnf, and the generated connections.cnf), with real binlog
 * replication by GTID from the primary's first event.
 */

export type Role = 'primary' | 'replica'

export type MariaDbServer = {
  role: Role
  port: number
  dir: string
  socket: string
  cnf: string
  log: string
}

export type DatabaseSecrets = { appPassword: string; replicationPassword: string }

export const APP_USER = 'commerce'
export const DATABASE = 'commerce'

export const serverOf = (stateDir: string, role: Role, port: number): MariaDbServer => {
  const dir = join(stateDir, 'mariadb', role)
  return {
    role,
    port,
    dir,
    socket: join(dir, 'mariadb.sock'),
    cnf: join(dir, 'my.cnf'),
    log: join(stateDir, 'logs', `mariadb-${role}.log`),
  }
}

const asRoot = process.getuid?.() === 0

/** mariadbd refuses to run as root; the Debian package's `mysql` user owns its files instead. */
function chownToMysql(path: string) {
  if (asRoot) execFileSync('chown', ['-R', 'mysql:mysql', path])
}

/**
 * Creates both data folders once, from one `mariadb-install-db`: identical system tables and no binary
 * log yet, so the replica can follow the primary from its very first event. Returns false when they
 * already exist (a restart keeps its data).
 */
export function initDataFolders(stateDir: string, servers: MariaDbServer[]): boolean {
  if (servers.every((server) => existsSync(join(server.dir, 'data', 'mysql')))) return false
  const template = join(stateDir, 'mariadb', 'template')
  rmSync(template, { recursive: true, force: true })
  mkdirSync(join(stateDir, 'mariadb'), { recursive: true })
  const installer = ['/usr/bin/mariadb-install-db', '/usr/bin/mysql_install_db'].find((path) =>
    existsSync(path),
  )
  if (!installer) throw new Error('mariadb-install-db is missing: apt-get install -y mariadb-server')
  try {
    execFileSync(
      installer,
      [
        '--no-defaults',
        `--datadir=${template}`,
        ...(asRoot ? ['--user=mysql'] : []),
        // root logs in by password (empty) over the socket only; no anonymous users, no test database.
        '--auth-root-authentication-method=normal',
        '--skip-test-db',
      ],
      { stdio: 'pipe' },
    )
  } catch (error) {
    const output = (error as { stderr?: Buffer; stdout?: Buffer }).stderr?.toString() ?? ''
    throw new Error(`mariadb-install-db failed:\n${output}`)
  }
  for (const server of servers) {
    rmSync(server.dir, { recursive: true, force: true })
    mkdirSync(server.dir, { recursive: true })
    cpSync(template, join(server.dir, 'data'), { recursive: true })
    chownToMysql(server.dir)
  }
  rmSync(template, { recursive: true, force: true })
  return true
}

/** The option file of one server: the repository's shared files, then what is this server's own. */
export function writeServerCnf(server: MariaDbServer, infraMysql: string, connectionsCnf: string) {
  const includes = [join(infraMysql, 'server.cnf'), connectionsCnf]
  if (server.role === 'replica') includes.push(join(infraMysql, 'replica.cnf'))
  writeFileSync(
    server.cnf,
    [
      `# Written by \`npm run cluster\`: the ${server.role} of the local cluster.`,
      ...includes.map((file) => `!include ${file}`),
      '[mariadbd]',
      `datadir = ${join(server.dir, 'data')}`,
      `port = ${server.port}`,
      'bind-address = 127.0.0.1',
      `socket = ${server.socket}`,
      `pid-file = ${join(server.dir, 'mariadb.pid')}`,
      `server-id = ${server.role === 'primary' ? 1 : 2}`,
      'log-bin = mariadb-bin',
      'relay-log = relay-bin',
      // Local sizes: two servers on a developer's machine, not a database host.
      'innodb_buffer_pool_size = 64M',
      '',
    ].join('\n'),
  )
}

export function startServer(server: MariaDbServer): Started {
  const binary = ['/usr/sbin/mariadbd', '/usr/sbin/mysqld'].find((path) => existsSync(path))
  if (!binary) throw new Error('mariadbd is missing: apt-get install -y mariadb-server')
  return spawnDetached(binary, [`--defaults-file=${server.cnf}`, ...(asRoot ? ['--user=mysql'] : [])], {
    env: { PATH: process.env.PATH },
    log: server.log,
  })
}

/** root over the server's socket (no password, no TCP): only this machine's operator gets in. */
export const rootConnection = (server: MariaDbServer) =>
  mysql.createConnection({ socketPath: server.socket, user: 'root', multipleStatements: false })

export async function waitForServer(server: MariaDbServer, exited: () => boolean): Promise<void> {
  await waitUntil(
    `MariaDB ${server.role} on port ${server.port}`,
    async () => {
      try {
        const connection = await rootConnection(server)
        await connection.end()
        return true
      } catch {
        return false
      }
    },
    { timeoutMs: 60_000, failed: () => (exited() ? `mariadbd exited:\n${tail(server.log)}` : undefined) },
  )
}

/**
 * On the primary's first start: the application's user and database and the replication user. These
 * statements are binary-logged, so the replica gets them (and every migration) by replication.
 */
export async function setUpPrimary(server: MariaDbServer, secrets: DatabaseSecrets): Promise<void> {
  const connection = await rootConnection(server)
  try {
    await connection.query(`CREATE DATABASE IF NOT EXISTS ${DATABASE}`)
    await connection.query(`CREATE USER IF NOT EXISTS '${APP_USER}'@'127.0.0.1' IDENTIFIED BY ?`, [
      secrets.appPassword,
    ])
    await connection.query(`GRANT ALL PRIVILEGES ON ${DATABASE}.* TO '${APP_USER}'@'127.0.0.1'`)
    await connection.query(`CREATE USER IF NOT EXISTS 'replication'@'127.0.0.1' IDENTIFIED BY ?`, [
      secrets.replicationPassword,
    ])
    await connection.query(`GRANT REPLICATION SLAVE ON *.* TO 'replication'@'127.0.0.1'`)
  } finally {
    await connection.end()
  }
}

/** On the replica's first start: follow the primary by GTID from its first event. */
export async function setUpReplica(
  replica: MariaDbServer,
  primary: MariaDbServer,
  secrets: DatabaseSecrets,
): Promise<void> {
  const connection = await rootConnection(replica)
  try {
    await connection.query(
      `CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = ?, MASTER_USER = 'replication',
       MASTER_PASSWORD = ?, MASTER_USE_GTID = slave_pos, MASTER_CONNECT_RETRY = 1`,
      [primary.port, secrets.replicationPassword],
    )
    await connection.query('START SLAVE')
  } finally {
    await connection.end()
  }
}

type SlaveStatus = {
  Slave_IO_Running: string
  Slave_SQL_Running: string
  Last_Error: string
  Last_IO_Error: string
}

/** Replication runs and the replica has applied everything the primary had logged when this was called. */
export async function waitForReplica(replica: MariaDbServer, primary: MariaDbServer): Promise<void> {
  const [p, r] = await Promise.all([rootConnection(primary), rootConnection(replica)])
  try {
    const [[position]] = (await p.query('SELECT @@gtid_binlog_pos AS pos')) as unknown as [[{ pos: string }]]
    let last: SlaveStatus | undefined
    await waitUntil(
      'the replica to replicate',
      async () => {
        const [rows] = (await r.query('SHOW SLAVE STATUS')) as unknown as [SlaveStatus[]]
        last = rows[0]
        return last?.Slave_IO_Running === 'Yes' && last?.Slave_SQL_Running === 'Yes'
      },
      {
        timeoutMs: 30_000,
        failed: () =>
          last?.Last_Error ||
          (last?.Last_IO_Error && !last.Last_IO_Error.includes('connecting')
            ? last.Last_IO_Error
            : undefined) ||
          undefined,
      },
    )
    const [[waited]] = (await r.query('SELECT MASTER_GTID_WAIT(?, 30) AS result', [
      position.pos,
    ])) as unknown as [[{ result: number }]]
    if (waited.result !== 0) throw new Error('the replica did not catch up with the primary within 30 s')
  } finally {
    await Promise.all([p.end(), r.end()])
  }
}
