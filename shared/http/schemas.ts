import * as v from 'valibot'

/**
 * A decimal positive integer up to 2^53 - 1, as a path or query string (docs/api.md: `0`, `1e3`, `1.5` are 400).
 * The `v.number()` after the transform is the value a client sends, which is what OpenAPI documents a
 * parameter by (`type: integer`), so typed clients take `userId: 7`; it never fails after the regex.
 */
export const IdString = v.pipe(
  v.string(),
  v.regex(/^[1-9][0-9]{0,15}$/, 'must be a positive decimal integer'),
  v.transform(Number),
  v.number(),
  v.integer(),
  v.minValue(1),
  v.maxValue(Number.MAX_SAFE_INTEGER, 'must be at most 9007199254740991'),
  v.metadata({ format: 'int64' }),
  v.description('A positive decimal integer without sign, leading zeros, fraction or exponent'),
)

export const idParams = <K extends string>(name: K) =>
  v.strictObject({ [name]: IdString } as { [P in K]: typeof IdString })

export const Int = (min: number, max: number) =>
  v.pipe(v.number(), v.integer(), v.minValue(min), v.maxValue(max))

/** An opaque cursor: base64url of the last id seen. Anything we did not mint is a 400. */
export const encodeCursor = (lastId: number): string => Buffer.from(`id:${lastId}`).toString('base64url')

const CursorString = v.pipe(
  v.string(),
  v.maxLength(64),
  v.transform((raw) => {
    const match = /^id:([1-9][0-9]{0,15})$/.exec(Buffer.from(raw, 'base64url').toString('utf8'))
    return match ? Number(match[1]) : Number.NaN
  }),
  v.check((id) => Number.isSafeInteger(id), 'is not a cursor this service issued'),
)

export const PageQuery = {
  limit: v.optional(
    v.pipe(
      v.string(),
      v.regex(/^[0-9]{1,3}$/, 'must be a whole number from 1 to 100'),
      v.transform(Number),
      v.number(),
      v.integer(),
      v.minValue(1),
      v.maxValue(100),
      v.description('How many items to return'),
    ),
    '20',
  ),
  cursor: v.optional(
    v.pipe(CursorString, v.description('The `nextCursor` of the previous page; absent for the first page')),
  ),
}

export const pageQuery = v.strictObject(PageQuery)

export type Page<T> = { items: T[]; nextCursor: string | null }

/** Builds a page from `limit + 1` fetched rows: the extra row only tells that there is more. */
export function toPage<Row, Item>(
  rows: Row[],
  limit: number,
  lastId: (row: Row) => number,
  toItem: (row: Row) => Item,
) {
  const items = rows.slice(0, limit)
  const last = items[items.length - 1]
  return {
    items: items.map(toItem),
    nextCursor: rows.length > limit && last !== undefined ? encodeCursor(lastId(last)) : null,
  } satisfies Page<Item>
}
