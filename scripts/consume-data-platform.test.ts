import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'
import type { EventEnvelope } from '../shared/events/outbox'
import { createEventPublisher } from '../shared/events/publisher'
import { connectForTest, orderEventData, uniqueSuffix, waitFor } from '../shared/events/testing'
import { deleteTopology, eventTopology } from '../shared/events/topology'
import { createLogger } from '../shared/logger'
import { testConfig } from '../shared/testing/harness'

const url = testConfig().rabbitmqUrl
const topology = eventTopology(uniqueSuffix('platform'))
let child: ChildProcessWithoutNullStreams | undefined

afterAll(async () => {
  child?.kill()
  const connection = await connectForTest(url)
  await deleteTopology(connection, topology).catch(() => undefined)
  await connection.close()
})

describe('npm run consume:data-platform', () => {
  it('prints each event on data.platform as one NDJSON line and acknowledges it', async () => {
    const script = fileURLToPath(new URL('./consume-data-platform.ts', import.meta.url))
    const running = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        script,
        '--url',
        url,
        '--suffix',
        topology.exchange.slice('commerce.events'.length),
        '--max',
        '3',
      ],
      { env: { ...process.env, RABBITMQ_URL: 'amqp://nobody:wrong@127.0.0.1:1' } },
    )
    child = running
    let stdout = ''
    let stderr = ''
    running.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString()
    })
    running.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString()
    })
    const exited = new Promise<number | null>((resolve) => running.on('exit', resolve))
    await waitFor('the consumer to start', () => stderr.includes('"consuming"'), 30_000)

    const publisher = await createEventPublisher({ url, topology, logger: createLogger('silent') })
    await waitFor('the publisher to connect', () => publisher.connected)
    const events: EventEnvelope[] = ['order.completed', 'order.cancelled', 'order.completed'].map(
      (type, i) => ({
        eventId: crypto.randomUUID(),
        type: type as EventEnvelope['type'],
        schemaVersion: 1,
        occurredAt: new Date().toISOString(),
        data: orderEventData({
          type: type as EventEnvelope['type'],
          items: [{ productId: i + 1, quantity: 1, unitPrice: 100 }],
        }),
      }),
    )
    for (const event of events) {
      await publisher.publish({
        eventId: event.eventId,
        type: event.type,
        payload: event,
        occurredAt: new Date(event.occurredAt),
      })
    }
    await publisher.close()

    expect(await exited).toBe(0)
    const lines = stdout.trimEnd().split('\n')
    expect(lines.map((line) => JSON.parse(line) as unknown)).toEqual(events)
    // Acknowledged: nothing is left for the next run.
    const connection = await connectForTest(url)
    const channel = await connection.createChannel()
    await waitFor(
      'the queue to be empty',
      async () => (await channel.checkQueue(topology.queues.dataPlatform)).messageCount === 0,
      5_000,
    )
    await connection.close()
  })
})
