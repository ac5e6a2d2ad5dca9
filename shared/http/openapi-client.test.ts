import { readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { eq } from 'drizzle-orm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { balanceLedger, products } from '../db/schema'
import type { RuntimeDeps } from '../runtime/deps'
import { discoverFunctions } from '../runtime/discover'
import { listen, type RunningServer } from '../runtime/server'
import { binOf, REPO_ROOT, run } from '../testing/bin'
import { createTestDeps, insertProduct, tokenFor, uniqueUserId } from '../testing/harness'
import { createServiceApp } from './app'

/**
 * What a client does with /openapi.json: generate types (openapi-typescript), call through them
 * (openapi-fetch). clients/typescript is that client, with its own TypeScript 5 as a client project has;
 * here it runs against the real service on a port of its own.
 */
const CLIENT_DIR = join(REPO_ROOT, 'clients', 'typescript')

let deps: RuntimeDeps
let server: RunningServer
let base: string

beforeAll(async () => {
  deps = await createTestDeps()
  const functions = await discoverFunctions()
  const app = createServiceApp(
    deps,
    functions.map((fn) => fn.create(deps)),
    { routes: functions },
  )
  server = await listen(app, 0, '127.0.0.1')
  base = `http://127.0.0.1:${server.port}`
})
afterAll(async () => {
  await server?.close()
  await deps?.close()
})

describe('a typed client generated from the served /openapi.json', () => {
  it('is generated, type-checks (ids and limits as integers), and runs the README flow against the service', async () => {
    await rm(join(CLIENT_DIR, 'api.d.ts'), { force: true })
    const generate = await run(
      binOf('openapi-typescript', CLIENT_DIR),
      [`${base}/openapi.json`, '-o', 'api.d.ts'],
      {
        cwd: CLIENT_DIR,
        env: { NO_COLOR: '1' },
      },
    )
    expect(generate.code, generate.stderr).toBe(0)
    const types = await readFile(join(CLIENT_DIR, 'api.d.ts'), 'utf8')
    // Operations are named after the functions, so a client's call can be traced to its folder.
    expect(types).toContain('"order-create": {')

    const typecheck = await run(binOf('tsc', CLIENT_DIR), ['-p', '.'], { cwd: CLIENT_DIR })
    expect(typecheck.stdout + typecheck.stderr).toBe('')
    expect(typecheck.code).toBe(0)

    const userId = uniqueUserId()
    const productId = await insertProduct(deps, { price: 7_000, stock: 10 })
    const flow = await run(binOf('tsx'), ['flow.ts'], {
      cwd: CLIENT_DIR,
      env: {
        COMMERCE_URL: base,
        COMMERCE_TOKEN: await tokenFor(deps, userId),
        COMMERCE_USER_ID: String(userId),
        COMMERCE_PRODUCT_ID: String(productId),
      },
    })
    expect(flow.code, flow.stderr).toBe(0)
    const seen = JSON.parse(flow.stdout) as Record<string, unknown>
    expect(seen).toEqual({
      listed: { status: 200, count: expect.any(Number) },
      product: { id: productId, price: 7_000, stock: 10 },
      charged: { status: 200, balance: 100_000 },
      placed: { status: 201, id: expect.any(Number), state: 'PAID', total: 14_000 },
      replayed: { status: 201, header: 'true', id: (seen.placed as { id: number }).id },
      cancelled: { status: 200, state: 'CANCELLED' },
      balanceAfterCancel: 100_000,
      problem: {
        status: 400,
        code: 'VALIDATION_FAILED',
        errors: [{ path: 'items.0.quantity', message: expect.any(String) }],
      },
    })
    const listed = seen.listed as { count: number }
    expect(listed.count).toBeGreaterThan(0)
    expect(listed.count).toBeLessThanOrEqual(5)

    // The replay did nothing: one payment and one refund, and the stock is whole again.
    const [product] = await deps.db.select().from(products).where(eq(products.id, productId))
    expect(product?.stock).toBe(10)
    const entries = await deps.db.select().from(balanceLedger).where(eq(balanceLedger.userId, userId))
    expect(entries.map((entry) => [entry.type, entry.amount]).sort()).toEqual(
      [
        ['CHARGE', 100_000],
        ['PAYMENT', -14_000],
        ['REFUND', 14_000],
      ].sort(),
    )
  })
})
