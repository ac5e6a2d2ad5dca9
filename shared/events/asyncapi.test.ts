import { DiagnosticSeverity } from '@asyncapi/parser'
import { toJsonSchema } from '@valibot/to-json-schema'
import { describe, expect, it } from 'vitest'
import { checkJsonSchema, loadEventContract, stripAnnotations } from '../testing/event-contract'
import { orderEventData } from '../testing/events'
import { OrderCancelledEventSchema, OrderCompletedEventSchema } from './schema'
import {
  deadLetterQueue,
  eventTopology,
  queueBindings,
  queueDeclarations,
  streamDeclaration,
} from './topology'

describe('docs/events.asyncapi.yaml', () => {
  it('is a valid AsyncAPI document: no diagnostic of severity error', async () => {
    const { diagnostics } = await loadEventContract()
    expect(diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error)).toEqual([])
  })

  it('has the same payload schemas as the valibot schemas consumers validate with', async () => {
    const { payloads } = await loadEventContract()
    const fromValibot = (schema: Parameters<typeof toJsonSchema>[0]) => stripAnnotations(toJsonSchema(schema))
    expect(payloads.get('order.completed')).toEqual(fromValibot(OrderCompletedEventSchema))
    expect(payloads.get('order.cancelled')).toEqual(fromValibot(OrderCancelledEventSchema))
  })

  it('names the exchange, queues, stream, bindings, arguments and dead-letter queues the code declares', async () => {
    const { document } = await loadEventContract()
    const topology = eventTopology()
    const declarations = new Map(queueDeclarations(topology, 'quorum').map((d) => [d.name, d]))
    const declared = queueBindings(topology).map(({ queue, keys }) => ({
      queue,
      exchange: topology.exchange,
      keys,
      dlq: deadLetterQueue(queue),
      arguments: declarations.get(queue)?.arguments,
    }))
    const stream = streamDeclaration(topology)
    const bindings = document
      .channels()
      .all()
      .map((channel) => (channel.bindings().get('amqp')?.value() ?? {}) as Record<string, unknown>)
    const documented = (kind: 'queue' | 'stream') =>
      bindings
        .filter((binding) => binding.is === 'queue')
        .filter(
          (binding) =>
            ((binding['x-arguments'] as Record<string, unknown>)['x-queue-type'] === 'stream') ===
            (kind === 'stream'),
        )
        .map((binding) => ({
          queue: (binding.queue as { name?: string } | undefined)?.name,
          exchange: binding['x-exchange'],
          keys: binding['x-binding-keys'],
          ...(kind === 'queue' ? { dlq: binding['x-dead-letter-queue'] } : {}),
          arguments: binding['x-arguments'],
        }))
    expect(documented('queue')).toEqual(declared)
    expect(documented('stream')).toEqual([
      {
        queue: stream.name,
        exchange: topology.exchange,
        keys: stream.bindings.map((b) => b.key),
        arguments: stream.arguments,
      },
    ])
    const exchanges = bindings
      .filter((binding) => binding.is === 'routingKey')
      .map((binding) => (binding.exchange as { name?: string } | undefined)?.name)
    expect(new Set(exchanges)).toEqual(new Set([topology.exchange]))
  })

  it('accepts what the order verbs write and rejects what breaks the contract', async () => {
    const { payloads } = await loadEventContract()
    const completed = payloads.get('order.completed') ?? {}
    const good = {
      eventId: '0b7c2f9e-3f5e-4a35-9a4e-2f1d6f0c8a11',
      type: 'order.completed',
      schemaVersion: 1,
      occurredAt: new Date().toISOString(),
      data: orderEventData({
        type: 'order.completed',
        items: [{ productId: 1, quantity: 2, unitPrice: 100 }],
      }),
    }
    expect(checkJsonSchema(completed, good)).toEqual([])
    expect(checkJsonSchema(completed, { ...good, schemaVersion: 2 })).not.toEqual([])
    expect(checkJsonSchema(completed, { ...good, extra: true })).not.toEqual([])
    expect(checkJsonSchema(completed, { ...good, data: { ...good.data, total: 1.5 } })).not.toEqual([])
    expect(checkJsonSchema(completed, { ...good, data: { ...good.data, items: [] } })).not.toEqual([])
  })
})
