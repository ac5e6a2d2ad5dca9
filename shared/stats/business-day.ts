const formats = new Map<string, Intl.DateTimeFormat>()

function formatFor(timeZone: string): Intl.DateTimeFormat {
  let format = formats.get(timeZone)
  if (format === undefined) {
    // en-CA writes dates as YYYY-MM-DD, the form MySQL's DATE takes.
    format = new Intl.DateTimeFormat('en-CA', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit' })
    formats.set(timeZone, format)
  }
  return format
}

/**
 * Days already worked out, by time zone and quarter hour (the statistics consumer asks for the day of
 * every event, nearly all in the same few quarter hours). Today's offsets and their changes fall on
 * quarter hours, so a quarter hour is on one day; one that is not (an old local mean time) is not kept.
 */
const QUARTER_HOUR_MS = 15 * 60 * 1000
const days = new Map<string, string>()
const MAX_REMEMBERED_DAYS = 1_000

/** The calendar day (YYYY-MM-DD) that `instant` falls on in the business time zone (docs/api.md). */
export function businessDay(instant: Date, timeZone: string): string {
  const quarter = Math.floor(instant.getTime() / QUARTER_HOUR_MS)
  const slot = `${timeZone} ${quarter}`
  const known = days.get(slot)
  if (known !== undefined) return known
  const day = dayOf(instant, timeZone)
  const first = dayOf(new Date(quarter * QUARTER_HOUR_MS), timeZone)
  if (first === day && dayOf(new Date((quarter + 1) * QUARTER_HOUR_MS - 1), timeZone) === day) {
    if (days.size >= MAX_REMEMBERED_DAYS) days.clear()
    days.set(slot, day)
  }
  return day
}

function dayOf(instant: Date, timeZone: string): string {
  const parts = formatFor(timeZone).formatToParts(instant)
  const part = (type: Intl.DateTimeFormatPartTypes) => parts.find((p) => p.type === type)?.value ?? ''
  return `${part('year')}-${part('month')}-${part('day')}`
}

/** The day `days` after `day` (negative: before); plain calendar arithmetic, no time zone involved. */
export function addDays(day: string, days: number): string {
  const date = new Date(`${day}T00:00:00Z`)
  date.setUTCDate(date.getUTCDate() + days)
  return date.toISOString().slice(0, 10)
}
