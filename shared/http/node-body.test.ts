import { request } from 'node:http'
import * as v from 'valibot'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { listen, type RunningServer } from '../runtime/server'
import { createTestApp, useTestApp } from '../testing/harness'
import { defineRoute, routeApp } from './route'
import { MAX_BODY_BYTES } from './validate'

/*
 * Bodies as Node's HTTP server hands them over (readBody reads the IncomingMessage, not a web Request):
 * app.request in the other tests never takes that path. Sent with node:http so that the framing
 * (Content-Length, chunked, none at all) is exactly what is written here.
 */

const Named = v.strictObject({ name: v.string() })
const withBody = defineRoute({
  method: 'POST',
  path: '/test/with-body',
  summary: 'takes a body',
  tag: 'Test',
  access: 'public',
  body: Named,
  response: { status: 200, description: 'the body', schema: Named },
  errors: [],
})
const withoutBody = defineRoute({
  method: 'POST',
  path: '/test/without-body',
  summary: 'takes none',
  tag: 'Test',
  access: 'public',
  response: { status: 200, description: 'ok', schema: v.object({ ok: v.boolean() }) },
  errors: [],
})

const t = useTestApp([])
let server: RunningServer

beforeAll(async () => {
  const app = createTestApp(t.deps, [
    (deps) => routeApp(withBody, deps, async ({ body }) => body),
    (deps) => routeApp(withoutBody, deps, async () => ({ ok: true })),
  ])
  server = await listen(app, 0, '127.0.0.1')
})

afterAll(async () => {
  await server.close()
})

type Framing = { chunks?: string[]; contentLength?: boolean }

/** A POST whose body is `chunks` (none: no body at all), with Content-Length or else chunked. */
function post(path: string, { chunks, contentLength = true }: Framing) {
  return new Promise<{ status: number; body: { code?: string } & Record<string, unknown> }>(
    (resolve, reject) => {
      const text = chunks?.join('')
      const headers: Record<string, string> = {}
      if (chunks !== undefined) {
        headers['Content-Type'] = 'application/json'
        if (contentLength) headers['Content-Length'] = String(Buffer.byteLength(text ?? ''))
      }
      const req = request({ host: '127.0.0.1', port: server.port, path, method: 'POST', headers }, (res) => {
        let answer = ''
        res.setEncoding('utf8')
        res.on('data', (chunk: string) => {
          answer += chunk
        })
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(answer) }))
      })
      req.on('error', reject)
      for (const chunk of chunks ?? []) req.write(chunk)
      req.end()
    },
  )
}

describe('request bodies through Node', () => {
  it('takes a route without a body schema called with no body at all, or with an empty one', async () => {
    expect(await post('/test/without-body', {})).toEqual({ status: 200, body: { ok: true } })
    expect(await post('/test/without-body', { chunks: [''] })).toEqual({ status: 200, body: { ok: true } })
    expect(await post('/test/without-body', { chunks: ['{}'] })).toEqual({ status: 200, body: { ok: true } })
  })

  it('refuses a field sent to a route that takes none, with a length or chunked', async () => {
    for (const contentLength of [true, false]) {
      const answer = await post('/test/without-body', { chunks: ['{"x":', '1}'], contentLength })
      expect(answer.status).toBe(400)
      expect(answer.body.code).toBe('VALIDATION_FAILED')
    }
  })

  it('reads a body sent with a length or in chunks, and requires one where the route takes one', async () => {
    for (const contentLength of [true, false]) {
      const answer = await post('/test/with-body', { chunks: ['{"na', 'me":"kettle"}'], contentLength })
      expect(answer).toEqual({ status: 200, body: { name: 'kettle' } })
    }
    const missing = await post('/test/with-body', {})
    expect(missing.status).toBe(400)
    expect(missing.body.code).toBe('VALIDATION_FAILED')
  })

  it('counts a chunked body as it arrives: 413 past the limit', async () => {
    const chunks = Array.from({ length: MAX_BODY_BYTES / 1024 + 1 }, () => ' '.repeat(1024))
    const answer = await post('/test/with-body', {
      chunks: ['{"name":"', ...chunks, '"}'],
      contentLength: false,
    })
    expect(answer.status).toBe(413)
    expect(answer.body.code).toBe('PAYLOAD_TOO_LARGE')
  })
})
