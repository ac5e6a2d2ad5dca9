import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { RuntimeDeps } from '../runtime/deps'
import { createTestDeps, insertProduct } from '../testing/harness'
import { createStockGate } from './stock-gate'

let deps: RuntimeDeps

beforeAll(async () => {
  deps = await createTestDeps()
})

afterAll(async () => {
  await deps?.close()
})

describe('stock gate', () => {
  it('answers each of the lookups made in one turn (one MGET) for its own lines', async () => {
    const gate = createStockGate(deps.redis, deps.logger)
    const [soldOut, fewLeft, untouched] = [
      await insertProduct(deps),
      await insertProduct(deps),
      await insertProduct(deps),
    ]
    await gate.remember(soldOut, 0)
    await gate.remember(fewLeft, 2)
    const line = (productId: number, quantity: number) => ({ productId, quantity })
    const answers = await Promise.all([
      gate.refuses([line(untouched, 5)]),
      gate.refuses([line(untouched, 1), line(soldOut, 1)]),
      gate.refuses([line(fewLeft, 2)]),
      gate.refuses([line(fewLeft, 3), line(untouched, 1)]),
      gate.refuses([line(soldOut, 1)]),
    ])
    expect(answers).toEqual([undefined, line(soldOut, 1), undefined, line(fewLeft, 3), line(soldOut, 1)])
    await gate.clear([soldOut, fewLeft])
    expect(await Promise.all([gate.refuses([line(soldOut, 1)]), gate.refuses([line(fewLeft, 3)])])).toEqual([
      undefined,
      undefined,
    ])
  })
})
