import { randomInt } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { testConfig } from '../shared/testing/harness'
import { runChaos } from './chaos/run'

/*
 * The short form of `npm run chaos`: npm start behind proxies of its own, every dependency failed at
 * least once under a mixed load with deliberate replays, then every check of the full suite. The seed
 * is printed with the report, so a failing run can be repeated with `npm run chaos -- --short --seed N`.
 */
describe('npm run chaos -- --short', () => {
  it('keeps every promise while MySQL, Redis and RabbitMQ are cut, delayed and blackholed', async () => {
    const config = testConfig()
    const report: string[] = []
    const result = await runChaos({
      short: true,
      seed: randomInt(1, 2 ** 31),
      keep: false,
      targets: {
        databaseUrl: config.databaseUrl,
        redisUrl: config.redisUrl,
        rabbitmqUrl: config.rabbitmqUrl,
      },
      print: (line) => report.push(line),
    })
    const failed = result.checks.filter((check) => !check.ok).map((check) => check.name)
    expect(failed, report.join('\n')).toEqual([])
    expect(result.checks.length).toBeGreaterThanOrEqual(8)
    expect(new Set(result.faults.map((fault) => fault.dependency))).toEqual(
      new Set(['mysql', 'redis', 'rabbitmq']),
    )
  }, 180_000)
})
