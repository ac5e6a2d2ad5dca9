import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'
import {
  deleteTopology,
  eventTopology,
  queueDeclarations,
  type TopologyReport,
} from '../shared/events/topology'
import { connectForTest, uniqueSuffix } from '../shared/testing/events'
import { testConfig } from '../shared/testing/harness'

const url = testConfig().rabbitmqUrl
const suffix = uniqueSuffix('upgrade-cmd')
const topology = eventTopology(suffix)

afterAll(async () => {
  const connection = await connectForTest(url)
  await deleteTopology(connection, topology).catch(() => undefined)
  await connection.close()
})

function runUpgrade() {
  const script = fileURLToPath(new URL('./upgrade-events.ts', import.meta.url))
  const child = spawn(process.execPath, ['--import', 'tsx', script, '--url', url, '--suffix', suffix])
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString()
  })
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString()
  })
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    child.on('close', (code) => resolve({ code, stdout, stderr })),
  )
}

describe('npm run events:upgrade', () => {
  it('migrates queues of any other shape without losing a message, and leaves those with consumers (exit 1)', async () => {
    const connection = await connectForTest(url)
    const channel = await connection.createChannel()
    // Made by hand: classic queues without dead-lettering, one of them with messages, one being read.
    await channel.assertExchange(topology.exchange, 'topic', { durable: true })
    for (const queue of [topology.queues.dataPlatform, topology.queues.orderCompleted]) {
      await channel.assertQueue(queue, { durable: true })
      await channel.bindQueue(queue, topology.exchange, 'order.completed')
    }
    for (let i = 0; i < 3; i++) channel.publish(topology.exchange, 'order.completed', Buffer.from(`m${i}`))
    const reader = await connection.createChannel()
    await reader.prefetch(1)
    await reader.consume(topology.queues.orderCompleted, () => undefined)

    const { code, stdout, stderr } = await runUpgrade()
    expect(code, stderr).toBe(1)
    const report = JSON.parse(stdout) as TopologyReport
    expect(report.migrated).toEqual([{ queue: topology.queues.dataPlatform, moved: 3 }])
    expect(report.kept).toEqual([topology.queues.orderCompleted])

    const declaration = queueDeclarations(topology, report.queueType).find(
      (d) => d.name === topology.queues.dataPlatform,
    )
    await channel.assertQueue(topology.queues.dataPlatform, {
      durable: true,
      arguments: declaration?.arguments,
    })
    const contents: string[] = []
    for (;;) {
      const message = await channel.get(topology.queues.dataPlatform, { noAck: true })
      if (message === false) break
      contents.push(message.content.toString())
    }
    expect(contents).toEqual(['m0', 'm1', 'm2'])
    await connection.close()
  })
})
