import { describe, expect, it } from 'vitest'
import { createLogger } from '../logger'
import { createTcpProxy, waitFor } from '../testing/events'
import { testConfig } from '../testing/harness'
import { connectBroker } from './amqp'

describe('connectBroker', () => {
  it('survives losing the connection during setup, and sets up again once the broker is back', async () => {
    const rabbit = new URL(testConfig().rabbitmqUrl)
    const proxy = await createTcpProxy(Number(rabbit.port || 5672))
    const logs: Array<Record<string, unknown>> = []
    const logger = createLogger(
      'debug',
      {},
      (line) => logs.push(JSON.parse(line) as Record<string, unknown>) > 0,
    )
    let setups = 0
    let firstSetupStarted: () => void = () => undefined
    const started = new Promise<void>((resolve) => {
      firstSetupStarted = resolve
    })
    let continueFirstSetup: () => void = () => undefined
    const cutDone = new Promise<void>((resolve) => {
      continueFirstSetup = resolve
    })
    rabbit.port = String(proxy.port)
    const broker = await connectBroker({
      url: rabbit.toString(),
      name: 'setup-cut-test',
      logger,
      setup: async (connection) => {
        setups++
        if (setups > 1) return
        firstSetupStarted()
        await cutDone
        // The connection is gone: this fails, and with it the setup.
        await connection.createChannel()
      },
    })
    try {
      await started
      await proxy.cut()
      // Without a listener during setup, amqplib would throw this as an uncaught exception.
      await waitFor('the loss to be logged', () =>
        logs.some((line) => line.message === 'RabbitMQ connection lost during setup'),
      )
      continueFirstSetup()
      await proxy.restore()
      await waitFor('a second setup to connect', () => broker.connected)
      expect(setups).toBeGreaterThanOrEqual(2)
    } finally {
      await broker.close()
      await proxy.close()
    }
  })
})
