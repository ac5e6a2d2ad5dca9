import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { EventEnvelope, OrderEventType } from '../shared/events/outbox'
import { createEventPublisher, type EventPublisher } from '../shared/events/publisher'
import { deleteTopology, type EventTopology, eventTopology } from '../shared/events/topology'
import { createLogger } from '../shared/logger'
import {
  connectForTest,
  orderEnvelope,
  orderEventData,
  uniqueSuffix,
  waitFor,
} from '../shared/testing/events'
import { testConfig } from '../shared/testing/harness'

const url = testConfig().rabbitmqUrl
const script = fileURLToPath(new URL('./consume-data-platform.ts', import.meta.url))
const topologies: EventTopology[] = []
const children = new Set<ChildProcessWithoutNullStreams>()
let folder: string

beforeAll(async () => {
  folder = await mkdtemp(join(tmpdir(), 'data-platform-'))
})

afterAll(async () => {
  for (const child of children) child.kill('SIGKILL')
  const connection = await connectForTest(url)
  for (const topology of topologies) await deleteTopology(connection, topology).catch(() => undefined)
  await connection.close()
  await rm(folder, { recursive: true, force: true })
})

/** A topology of the test's own; the suffix is what the script's --suffix takes. */
function ownTopology(label: string) {
  const suffix = uniqueSuffix(label)
  const topology = eventTopology(suffix)
  topologies.push(topology)
  return { topology, suffix }
}

/**
 * Runs the script. `lines` are the complete stdout lines so far, parsed; with `pauseAt`, stdout is no
 * longer read from that many lines on, so that the script blocks in the middle of its output.
 */
function runScript(args: string[], options: { pauseAt?: number } = {}) {
  const child = spawn(process.execPath, ['--import', 'tsx', script, '--url', url, ...args], {
    // The URL comes from --url; a wrong RABBITMQ_URL proves the flag wins.
    env: { ...process.env, RABBITMQ_URL: 'amqp://nobody:wrong@127.0.0.1:1' },
  })
  children.add(child)
  let stdout = ''
  let paused = false
  const run = {
    child,
    stderr: '',
    lines: [] as unknown[],
    exited: new Promise<number | null>((resolve) =>
      child.on('close', (code) => {
        children.delete(child)
        resolve(code)
      }),
    ),
  }
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString()
    const complete = stdout.slice(0, stdout.lastIndexOf('\n') + 1)
    run.lines =
      complete === ''
        ? []
        : complete
            .trimEnd()
            .split('\n')
            .map((line) => JSON.parse(line) as unknown)
    if (!paused && options.pauseAt !== undefined && run.lines.length >= options.pauseAt) {
      paused = true
      child.stdout.pause()
    }
  })
  child.stderr.on('data', (chunk: Buffer) => {
    run.stderr += chunk.toString()
  })
  return run
}

async function connectPublisher(topology: EventTopology): Promise<EventPublisher> {
  const publisher = await createEventPublisher({ url, topology, logger: createLogger('silent') })
  await waitFor('the publisher to connect', () => publisher.connected)
  return publisher
}

/**
 * Events as the relay publishes them. Sent in this order on one channel, so stream offsets follow it;
 * the confirms are awaited together.
 */
async function publish(publisher: EventPublisher, events: EventEnvelope[]) {
  await Promise.all(
    events.map((event) =>
      publisher.publish({
        eventId: event.eventId,
        type: event.type,
        body: JSON.stringify(event),
        occurredAt: new Date(event.occurredAt),
      }),
    ),
  )
}

const makeEvent = (i: number, occurredAt = new Date()) => {
  const type: OrderEventType = i % 3 === 2 ? 'order.cancelled' : 'order.completed'
  return orderEnvelope(
    type,
    orderEventData({ type, items: [{ productId: i + 1, quantity: 1, unitPrice: 100 }] }),
    occurredAt,
  )
}

type Line = { offset: number; event: EventEnvelope }

describe('npm run consume:data-platform (live, from the data.platform queue)', () => {
  it('prints each event on data.platform as one NDJSON line and acknowledges it', async () => {
    const { topology, suffix } = ownTopology('platform')
    const run = runScript(['--suffix', suffix, '--max', '3'])
    await waitFor('the consumer to start', () => run.stderr.includes('"consuming"'), 30_000)

    const publisher = await connectPublisher(topology)
    const events = [0, 1, 2].map((i) => makeEvent(i))
    await publish(publisher, events)
    await publisher.close()

    expect(await run.exited).toBe(0)
    expect(run.lines).toEqual(events)
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

describe('npm run consume:data-platform --from (replay of the stream)', () => {
  // One stream for the read-only replays: 12 events, then one more that only ends the replays with --until.
  let shared: { suffix: string; events: EventEnvelope[]; boundary: Date }

  beforeAll(async () => {
    const { topology, suffix } = ownTopology('replay')
    const publisher = await connectPublisher(topology)
    // Six events that occurred an hour before `boundary`, six after it; all appended now, in this order.
    const boundary = new Date(Date.now() - 30 * 60_000)
    const events = Array.from({ length: 12 }, (_, i) =>
      makeEvent(i, new Date(boundary.getTime() + (i < 6 ? -3_600_000 + i * 1000 : (i - 6) * 1000))),
    )
    await publish(publisher, [...events, makeEvent(12)])
    await publisher.close()
    shared = { suffix, events, boundary }
  })

  it('replays from first: every event in order, each line with its stream offset', async () => {
    const run = runScript(['--suffix', shared.suffix, '--from', 'first', '--until', '12'])
    expect(await run.exited).toBe(0)
    expect(run.lines).toEqual(shared.events.map((event, offset) => ({ offset, event })))
  })

  it('replays from an offset: exactly the events from it on', async () => {
    const run = runScript(['--suffix', shared.suffix, '--from', '7', '--until', '12'])
    expect(await run.exited).toBe(0)
    expect(run.lines).toEqual(shared.events.slice(7).map((event, i) => ({ offset: 7 + i, event })))
  })

  it('replays from a time: exactly the events that occurred from then on, in order', async () => {
    const run = runScript([
      '--suffix',
      shared.suffix,
      '--from',
      shared.boundary.toISOString(),
      '--until',
      '12',
    ])
    expect(await run.exited).toBe(0)
    expect(run.lines).toEqual(shared.events.slice(6).map((event, i) => ({ offset: 6 + i, event })))
  })

  it('stops at a time: the events that occurred before it, then exits at the first one past the lateness', async () => {
    const until = new Date(shared.boundary.getTime() + 3_000)
    // Events 6, 7 and 8 occurred before `until`; 9 falls inside the 1 s of lateness (skipped), 10 ends it.
    const run = runScript([
      '--suffix',
      shared.suffix,
      '--from',
      shared.boundary.toISOString(),
      '--until',
      until.toISOString().replace('Z', '+00:00'),
      '--lateness',
      '1',
    ])
    expect(await run.exited).toBe(0)
    expect((run.lines as Line[]).map((line) => line.offset)).toEqual([6, 7, 8])
    expect(run.stderr).toContain('past --until')
  })

  it('replays a business day with --day, by the time the events occurred', async () => {
    const { topology, suffix } = ownTopology('day')
    const publisher = await connectPublisher(topology)
    // 2026-01-10 in Asia/Seoul is 2026-01-09T15:00Z .. 2026-01-10T15:00Z.
    const at = (iso: string) => new Date(iso)
    const events = [
      makeEvent(0, at('2026-01-09T14:59:59.999Z')),
      makeEvent(1, at('2026-01-09T15:00:00.000Z')),
      makeEvent(2, at('2026-01-10T14:59:59.999Z')),
      // Published late (after an outage, say): still that day's, and still inside the lateness.
      makeEvent(3, at('2026-01-10T15:00:00.000Z')),
      makeEvent(4, at('2026-01-10T09:00:00.000Z')),
      makeEvent(5, at('2026-01-10T15:10:00.000Z')),
    ]
    await publish(publisher, events)
    await publisher.close()
    const run = runScript(['--suffix', suffix, '--day', '2026-01-10'])
    expect(await run.exited).toBe(0)
    expect((run.lines as Line[]).map((line) => line.event)).toEqual([events[1], events[2], events[4]])
  })

  it('refuses arguments it cannot honour, with a message and exit code 2', async () => {
    for (const args of [
      ['--from', 'yesterday'],
      ['--from', '2026-01-10T00:00:00'],
      ['--day', '2026-13-01'],
    ]) {
      const run = runScript(['--suffix', shared.suffix, ...args])
      expect(await run.exited, args.join(' ')).toBe(2)
      expect(run.stderr).toContain(args[0])
      expect(run.lines).toEqual([])
    }
  })

  it('a replay killed mid-way resumes from its offset file without a gap', async () => {
    const { topology, suffix } = ownTopology('resume')
    const publisher = await connectPublisher(topology)
    const events = Array.from({ length: 1000 }, (_, i) => makeEvent(i))
    await publish(publisher, events)
    const offsetFile = join(folder, 'resume.offset')
    const args = ['--suffix', suffix, '--from', 'first', '--until', '1000', '--offset-file', offsetFile]

    // After 50 lines stdout is no longer read: the pipe fills and the replay blocks in the middle of its
    // output (1000 lines are several times what the pipe and the reader's buffer hold).
    const first = runScript([...args, '--prefetch', '10'], { pauseAt: 50 })
    await waitFor('a first part of the replay', () => first.lines.length >= 50, 30_000)
    first.child.kill('SIGKILL')
    first.child.stdout.resume()
    first.child.stdout.resume()
    await first.exited
    const before = first.lines as Line[]
    expect(before.length).toBeLessThan(1000)
    const stored = (JSON.parse(await readFile(offsetFile, 'utf8')) as { next: number }).next
    // The stored position is never ahead of what was written out.
    expect(stored).toBeLessThanOrEqual((before.at(-1)?.offset ?? -1) + 1)

    await publish(publisher, [makeEvent(1000)])
    await publisher.close()
    const second = runScript(args)
    expect(await second.exited).toBe(0)
    const after = second.lines as Line[]
    expect(after[0]?.offset).toBe(stored)
    // Together: every offset, in order; lines printed twice (after the stored position) dedupe by eventId.
    const seen = new Map<string, Line>()
    for (const line of [...before, ...after]) seen.set(line.event.eventId, line)
    expect([...seen.values()].sort((a, b) => a.offset - b.offset)).toEqual(
      events.map((event, offset) => ({ offset, event })),
    )
    expect(second.stderr).toContain('resuming from the offset file')
  })
})
