/**
 * What one run does: `npm run bench` (full) or `npm run bench -- --quick` (every scenario, shorter:
 * fewer and shorter rounds, one coupon burst and one flash sale per side, three cold starts).
 */
export type Profile = {
  name: 'full' | 'quick'
  /** Connections of the timed loads (product read, orders). */
  connections: number
  /** Each side of a comparison gets `rounds` × `roundSeconds`, in rounds alternating with the other side. */
  rounds: number
  roundSeconds: number
  warmupSeconds: number
  /**
   * Pause between rounds, not measured: a load generator stops on time, but the requests still queued in
   * the server finish after it, and that work must not land in the other side's round.
   */
  settleMs: number
  readProducts: number
  coupon: { users: number; perUser: number; quantity: number; concurrency: number; rounds: number }
  orders: { products: number; buyers: number }
  hot: { buyers: number; connections: number }
  events: { seconds: number; products: number; buyers: number; rateShare: number }
  flash: { stock: number; buyers: number; concurrency: number; sales: number }
  coldStart: { runs: number; idleSeconds: number }
}

const common = {
  connections: 50,
  readProducts: 100,
  orders: { products: 200, buyers: 200 },
  hot: { buyers: 100, connections: 100 },
  flash: { stock: 200, buyers: 2_000, concurrency: 100 },
}

export const FULL: Profile = {
  ...common,
  name: 'full',
  rounds: 4,
  roundSeconds: 3,
  warmupSeconds: 2,
  settleMs: 1_000,
  coupon: { users: 2_000, perUser: 10, quantity: 1_000, concurrency: 50, rounds: 2 },
  events: { seconds: 10, products: 200, buyers: 200, rateShare: 0.5 },
  flash: { ...common.flash, sales: 2 },
  coldStart: { runs: 5, idleSeconds: 5 },
}

export const QUICK: Profile = {
  ...FULL,
  name: 'quick',
  rounds: 2,
  roundSeconds: 1.5,
  warmupSeconds: 1,
  settleMs: 500,
  coupon: { ...FULL.coupon, rounds: 1 },
  events: { ...FULL.events, seconds: 5 },
  flash: { ...FULL.flash, sales: 1 },
  coldStart: { runs: 3, idleSeconds: 5 },
}

export function profileFromArgs(args: string[]): Profile {
  const unknown = args.filter((a) => a !== '--quick')
  if (unknown.length > 0) throw new Error(`unknown arguments: ${unknown.join(' ')} (only --quick is known)`)
  return args.includes('--quick') ? QUICK : FULL
}
