import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runEach, runPaced } from './load'

/** Answers 201 to a POST and a 409 problem to anything else, counting the requests by path. */
const seen = new Map<string, number>()
let server: Server
let port = 0

beforeAll(async () => {
  server = createServer((req, res) => {
    seen.set(req.url ?? '', (seen.get(req.url ?? '') ?? 0) + 1)
    req.resume()
    req.on('end', () => {
      if (req.method === 'POST') res.writeHead(201).end('{}')
      else
        res.writeHead(409, { 'content-type': 'application/problem+json' }).end('{"code":"COUPON_SOLD_OUT"}')
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  port = (server.address() as AddressInfo).port
})
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())))

describe('the bench load generators', () => {
  it('runEach sends every request exactly once and tallies the answers by status and problem code', async () => {
    const requests = Array.from({ length: 60 }, (_, i) =>
      i % 3 === 0
        ? { method: 'GET' as const, path: `/each/${i}` }
        : { method: 'POST' as const, path: `/each/${i}`, body: '{}' },
    )
    const sample = await runEach({ port, concurrency: 7, requests })
    expect(sample.statuses).toEqual({ '201': 40, '409 COUPON_SOLD_OUT': 20 })
    expect(sample.errors).toBe(0)
    expect(sample.latenciesMs).toHaveLength(60)
    for (let i = 0; i < 60; i++) expect(seen.get(`/each/${i}`)).toBe(1)
  })

  it('runPaced sends the rate times the duration, and waits for every answer', async () => {
    let n = 0
    const sample = await runPaced({
      port,
      perSecond: 200,
      seconds: 0.25,
      next: () => ({ method: 'POST', path: `/paced/${n++}`, body: '{}' }),
    })
    expect(n).toBe(50)
    expect(sample.statuses).toEqual({ '201': 50 })
    expect(sample.latenciesMs).toHaveLength(50)
  })
})
