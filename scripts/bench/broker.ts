import { execFileSync } from 'node:child_process'
import amqp, { type Channel, type ChannelModel } from 'amqplib'
import { eventTopology, queueDeclarations, streamDeclaration } from '../../shared/events/topology'

/**
 * The bench's own RabbitMQ vhost: the service it starts publishes there, so it never puts a message into
 * anyone else's queues, and the bench reads data.platform there to time the events.
 */
export const BENCH_VHOST = 'commerce-bench'

export function vhostUrl(baseUrl: string, vhost: string): string {
  const url = new URL(baseUrl)
  url.pathname = `/${encodeURIComponent(vhost)}`
  return url.toString()
}

const rabbitmqctl = (args: string[]) =>
  execFileSync('rabbitmqctl', ['-q', ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })

/** Creates the vhost and gives the bench's RabbitMQ user every permission in it, where missing. */
export function ensureVhost(baseUrl: string, vhost: string): void {
  let vhosts: string
  try {
    vhosts = rabbitmqctl(['list_vhosts', 'name'])
  } catch (error) {
    throw new Error(
      `rabbitmqctl is needed to give the bench a vhost of its own (${error instanceof Error ? error.message : String(error)}); ` +
        `run the bench on the machine that runs RabbitMQ, or create the vhost "${vhost}" with every permission for the user of RABBITMQ_URL`,
    )
  }
  if (!vhosts.split('\n').some((line) => line.trim() === vhost)) rabbitmqctl(['add_vhost', vhost])
  const user = decodeURIComponent(new URL(baseUrl).username || 'guest')
  rabbitmqctl(['set_permissions', '-p', vhost, user, '.*', '.*', '.*'])
}

/** Every queue and stream the service declares (shared/events/topology.ts), dead-letter queues included. */
function topologyQueues(): string[] {
  const topology = eventTopology()
  return [
    ...queueDeclarations(topology, 'quorum').map((q) => q.name),
    streamDeclaration(topology).name,
    topology.upgradeLock,
  ]
}

/**
 * Deletes the queues (and their messages) of the vhost, as the database is dropped: every run starts
 * with empty queues, and the service declares them again when it starts.
 */
export async function deleteQueues(url: string): Promise<void> {
  const connection = await amqp.connect(url, { timeout: 10_000 })
  try {
    const channel = await connection.createChannel()
    for (const queue of topologyQueues()) await channel.deleteQueue(queue)
    await channel.close()
  } finally {
    await connection.close()
  }
}

export type Arrival = { body: string; arrivedAt: number }

/**
 * A consumer of the service's data.platform queue that notes when each message arrived (Date.now(), the
 * clock the service's occurredAt comes from) and acknowledges it.
 */
export async function consumeDataPlatform(url: string, onMessage: (arrival: Arrival) => void) {
  const connection: ChannelModel = await amqp.connect(url, { timeout: 10_000 })
  const channel: Channel = await connection.createChannel()
  const queue = eventTopology().queues.dataPlatform
  await channel.prefetch(1_000)
  return {
    /** Drops whatever the queue holds (events of the earlier scenarios). */
    purge: async () => (await channel.purgeQueue(queue)).messageCount,
    async start() {
      await channel.consume(queue, (message) => {
        if (!message) return
        onMessage({ body: message.content.toString('utf8'), arrivedAt: Date.now() })
        channel.ack(message)
      })
    },
    async close() {
      await channel.close().catch(() => undefined)
      await connection.close().catch(() => undefined)
    },
  }
}

/** Messages ready in a queue of the vhost (not counting those delivered and not yet acknowledged). */
export async function readyMessages(url: string, queue: string): Promise<number> {
  const connection = await amqp.connect(url, { timeout: 10_000 })
  try {
    const channel = await connection.createChannel()
    const { messageCount } = await channel.checkQueue(queue)
    await channel.close()
    return messageCount
  } finally {
    await connection.close()
  }
}

export function rabbitmqVersion(): string {
  try {
    return rabbitmqctl(['version']).trim()
  } catch {
    return 'unknown'
  }
}
