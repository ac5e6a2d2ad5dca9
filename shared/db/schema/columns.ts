import { bigint, datetime } from 'drizzle-orm/mysql-core'

/** Ids are unsigned BIGINT, read as JS numbers: every id the API accepts is at most 2^53 - 1. */
export const id = (name: string) => bigint(name, { mode: 'number', unsigned: true })

/** Money is a signed BIGINT of won: integers only, and every amount the API allows is a safe JS integer. */
export const won = (name: string) => bigint(name, { mode: 'number' })

/** Millisecond UTC timestamps; the pool runs every session with time_zone '+00:00'. */
export const timestamp = (name: string) => datetime(name, { mode: 'date', fsp: 3 })
