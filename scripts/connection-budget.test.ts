import { describe, expect, it } from 'vitest'
import { ConnectionBudgetError, connectionBudget, type ProcessPools } from './connection-budget'

const fn = (name: string, instances: number, poolSize = 5, replicaPoolSize = 2): ProcessPools => ({
  name,
  instances,
  poolSize,
  replicaPoolSize,
})

describe('connectionBudget', () => {
  it('adds up every instance of every process, per server, and sets max_connections with headroom', () => {
    const budget = connectionBudget(
      [fn('order-create', 2), fn('product-get', 3, 4, 3), fn('outbox-relay', 1, 5, 0)],
      { ceiling: 200, headroom: 20 },
    )
    expect(budget.primary).toBe(2 * 5 + 3 * 4 + 5)
    expect(budget.replica).toBe(2 * 2 + 3 * 3)
    expect(budget.maxConnections).toBe(27 + 20)
    expect(budget.rows).toContainEqual({ name: 'product-get', instances: 3, primary: 12, replica: 9 })
  })

  it("counts a rolling update's surge instances", () => {
    const budget = connectionBudget([{ ...fn('order-create', 10), surge: 3 }], { ceiling: 500, headroom: 20 })
    expect(budget.primary).toBe(13 * 5)
    expect(budget.rows[0]?.instances).toBe(13)
  })

  it('accepts a topology exactly at the ceiling less the headroom, and refuses one connection more', () => {
    const limits = { ceiling: 100, headroom: 20 }
    expect(connectionBudget([fn('a', 16, 5)], limits).maxConnections).toBe(100)
    expect(() => connectionBudget([fn('a', 16, 5), fn('b', 1, 1, 0)], limits)).toThrow(ConnectionBudgetError)
  })

  it('refuses the topology of issue 14 (pools of 20, two instances of three functions) on a default MariaDB', () => {
    const names = Array.from({ length: 18 }, (_, i) => `function-${i}`)
    const processes = names.map((name, i) => fn(name, i < 3 ? 2 : 1, 20, 0))
    expect(() => connectionBudget(processes, { ceiling: 151, headroom: 10 })).toThrow(
      /up to 420 connections to the primary, but a server may have 151 \(max_connections\) less 10 of headroom = 141\. Largest: function-0 2 × 20 = 40/,
    )
    // The same processes with the default pools fit.
    const small = names.map((name, i) => fn(name, i < 3 ? 2 : 1))
    expect(connectionBudget(small, { ceiling: 151, headroom: 10 }).primary).toBe(21 * 5)
  })

  it('refuses an over-budget replica on its own', () => {
    expect(() => connectionBudget([fn('reader', 10, 2, 20)], { ceiling: 150, headroom: 10 })).toThrow(
      /connections to the replica/,
    )
  })

  it('refuses nonsense input instead of computing with it', () => {
    const limits = { ceiling: 100, headroom: 10 }
    expect(() => connectionBudget([fn('a', -1)], limits)).toThrow(/instances must be a whole number/)
    expect(() => connectionBudget([fn('a', 1.5)], limits)).toThrow(/instances/)
    expect(() => connectionBudget([fn('a', 1), fn('a', 1)], limits)).toThrow(/listed twice/)
    expect(() => connectionBudget([], { ceiling: 10, headroom: 10 })).toThrow(/headroom below the ceiling/)
  })
})
