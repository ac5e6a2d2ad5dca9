export type CouponTerms = { type: 'FIXED' | 'PERCENT'; value: number }

/**
 * Pricing (docs/api.md, Orders), in integer won: FIXED takes min(value, subtotal); PERCENT takes
 * floor(subtotal × value / 100). Every input is a safe integer and subtotal ≤ 50 × 100 × 100,000,000
 * = 5 × 10^11, so subtotal × 100 stays far below 2^53: the arithmetic is exact.
 */
export function discountFor(subtotal: number, coupon: CouponTerms | null): number {
  if (coupon === null) return 0
  if (coupon.type === 'FIXED') return Math.min(coupon.value, subtotal)
  return Math.floor((subtotal * coupon.value) / 100)
}

export function priceLines<L extends { unitPrice: number; quantity: number }>(lines: L[]) {
  const priced = lines.map((line) => ({ ...line, lineTotal: line.unitPrice * line.quantity }))
  return { lines: priced, subtotal: priced.reduce((sum, line) => sum + line.lineTotal, 0) }
}
