import { resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { redactUrl } from '../shared/config'
import {
  ClusterError,
  clusterStatus,
  DEFAULT_HTTP_PORT,
  DEFAULT_HTTPS_PORT,
  DEFAULT_STATE_DIR,
  DEFAULT_VHOST,
  passThrough,
  removeState,
  rollingRestart,
  startCluster,
  stopCluster,
} from './cluster/cluster'

const usage = `Usage: npm run cluster -- <command> [options]

  start      start the local cluster in the background; returns once it serves, printing its URLs
  status     every process of the cluster with its port and health
  restart    rolling restart, one instance at a time, without failing a request [function ...]
  stop       stop exactly what start started; leaves nothing listening (data is kept)
  clean      delete the state folder of a stopped cluster (data, logs, certificate, secrets)

Options (start):
  --http-port <port>       nginx over HTTP (default ${DEFAULT_HTTP_PORT})
  --https-port <port>      nginx over HTTPS, TLS 1.2+ (default ${DEFAULT_HTTPS_PORT})
  --scale <name>=<n>       instances of a function or worker (repeatable; defaults in scripts/gen-infra.ts)
  --vhost <name>           RabbitMQ vhost at RABBITMQ_URL (default ${DEFAULT_VHOST})
Every command:
  --state-dir <dir>        where everything lives (default .cluster, or CLUSTER_STATE_DIR)

The application's own variables that are set (RATE_LIMIT_PER_SECOND, LOG_LEVEL, JWT_SECRET, …) are
passed to every function; the cluster sets the connection ones itself.`

const portOption = (value: string | undefined, fallback: number, name: string) => {
  if (value === undefined) return fallback
  const port = Number(value)
  if (!/^\d+$/.test(value) || port < 1 || port > 65535)
    throw new ClusterError(`${name} must be a port (1-65535)`)
  return port
}

function parseScale(values: string[]): Record<string, number> {
  return Object.fromEntries(
    values.map((value) => {
      const match = /^([a-z0-9-]+)=(\d+)$/.exec(value)
      if (!match || Number(match[2]) < 1)
        throw new ClusterError(`--scale ${value}: expected <function>=<instances ≥ 1>`)
      return [match[1] as string, Number(match[2])]
    }),
  )
}

const say = (line: string) => process.stdout.write(`cluster: ${line}\n`)

async function printStatus(stateDir: string) {
  const { state, processes } = await clusterStatus(stateDir)
  if (!state || processes.length === 0) {
    process.stdout.write(`No cluster runs in ${stateDir}.\n`)
    return false
  }
  const rows = processes.map((p) => [p.name, String(p.pid), String(p.port), p.health])
  const widths = [0, 1, 2].map((i) => Math.max(...rows.map((row) => (row[i] as string).length), 7))
  process.stdout.write(
    `${['process', 'pid', 'port', 'health'].map((h, i) => h.padEnd(widths[i] ?? 0)).join('  ')}\n` +
      rows.map((row) => row.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join('  ')).join('\n') +
      '\n',
  )
  process.stdout.write(
    `connection budget: up to ${state.budget.primary} connections to the primary, ${state.budget.replica} to the replica; ` +
      `max_connections ${state.budget.maxConnections}\n`,
  )
  return processes.every((p) => p.running)
}

async function main(argv: string[]) {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      'state-dir': { type: 'string' },
      'http-port': { type: 'string' },
      'https-port': { type: 'string' },
      scale: { type: 'string', multiple: true },
      vhost: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  })
  const [command, ...rest] = positionals
  if (values.help || !command) {
    process.stdout.write(`${usage}\n`)
    return values.help ? 0 : 2
  }
  const stateDir = resolve(values['state-dir'] ?? process.env.CLUSTER_STATE_DIR ?? DEFAULT_STATE_DIR)
  switch (command) {
    case 'start': {
      const state = await startCluster({
        stateDir,
        httpPort: portOption(values['http-port'], DEFAULT_HTTP_PORT, '--http-port'),
        httpsPort: portOption(values['https-port'], DEFAULT_HTTPS_PORT, '--https-port'),
        scale: parseScale(values.scale ?? []),
        rabbitmqUrl: process.env.RABBITMQ_URL || 'amqp://guest:guest@127.0.0.1:5672',
        vhost: values.vhost ?? DEFAULT_VHOST,
        appEnv: passThrough(process.env),
        jwtSecret: process.env.JWT_SECRET || undefined,
        say,
      })
      await printStatus(stateDir)
      process.stdout.write(
        `\nThe API: https://127.0.0.1:${state.httpsPort}/v1/products (self-signed: curl --cacert ${stateDir}/tls/cert.pem)\n` +
          `         http://127.0.0.1:${state.httpPort}/v1/products, reference at /docs\n` +
          `RabbitMQ: ${redactUrl(state.rabbitmqUrl)}\n` +
          `Tokens:  JWT_SECRET=$(cat ${stateDir}/jwt-secret) npm run -s token -- --sub 1\n` +
          `Logs:    ${stateDir}/logs/   Stop: npm run cluster -- stop\n`,
      )
      return 0
    }
    case 'status':
      return (await printStatus(stateDir)) ? 0 : 1
    case 'restart':
      await rollingRestart(stateDir, rest, say)
      await printStatus(stateDir)
      return 0
    case 'stop': {
      const result = await stopCluster(stateDir)
      say(
        `stopped ${result.stopped.length + result.killed.length} processes` +
          (result.killed.length > 0 ? ` (killed after the grace period: ${result.killed.join(', ')})` : ''),
      )
      if (result.stillListening.length > 0) {
        say(`still listening on ${result.stillListening.join(', ')}: not started by this cluster?`)
        return 1
      }
      return 0
    }
    case 'clean':
      removeState(stateDir)
      say(`removed ${stateDir}`)
      return 0
    default:
      process.stderr.write(`Unknown command ${command}\n\n${usage}\n`)
      return 2
  }
}

try {
  process.exit(await main(process.argv.slice(2)))
} catch (error) {
  process.stderr.write(`cluster: ${error instanceof Error ? error.message : String(error)}\n`)
  process.exit(1)
}
