import { describe, expect, it } from 'vitest'
import { createCombiner } from './combiner'

const recording = (options: { maxBatch: number; concurrency: number; lingerMs?: number }) => {
  const batches: number[][] = []
  const combiner = createCombiner<number, number>(async (batch) => {
    batches.push(batch)
    return batch.map((n) => n * 10)
  }, options)
  return { batches, combiner }
}

describe('combiner', () => {
  it('puts the requests of one event-loop turn in one batch, each with its own outcome', async () => {
    const { batches, combiner } = recording({ maxBatch: 64, concurrency: 4 })
    const outcomes = await Promise.all([1, 2, 3, 4, 5].map((n) => combiner.submit(n)))
    expect(outcomes).toEqual([10, 20, 30, 40, 50])
    expect(batches).toEqual([[1, 2, 3, 4, 5]])
  })

  it('splits a turn larger than maxBatch over the free slots', async () => {
    const { batches, combiner } = recording({ maxBatch: 2, concurrency: 4 })
    await Promise.all([1, 2, 3, 4, 5].map((n) => combiner.submit(n)))
    expect(batches).toEqual([[1, 2], [3, 4], [5]])
  })

  it('with a linger, starts as soon as maxBatch requests wait, without waiting it out', async () => {
    // A linger of a minute: the test would time out if the full batch waited for it.
    const { batches, combiner } = recording({ maxBatch: 3, concurrency: 1, lingerMs: 60_000 })
    const first = combiner.submit(1)
    await new Promise((resolve) => setImmediate(resolve))
    await Promise.all([first, combiner.submit(2), combiner.submit(3)])
    expect(batches).toEqual([[1, 2, 3]])
  })
})
