import { readFile, rename, writeFile } from 'node:fs/promises'
import { addDays, businessDay } from '../../shared/stats/business-day'

/*
 * The parts of `npm run consume:data-platform --from …` that need no broker: where a replay starts and
 * stops, which events it prints, and the offset file a restarted replay resumes from.
 */

export type StreamStart =
  | { kind: 'first' | 'last' | 'next' }
  | { kind: 'offset'; offset: number }
  | { kind: 'time'; at: Date }

export type StreamEnd = { kind: 'offset'; offset: number } | { kind: 'time'; at: Date }

const OFFSET = /^\d{1,16}$/
// A zone is required: a bare local time would mean something else on every machine.
const INSTANT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$/
const DAY = /^\d{4}-\d{2}-\d{2}$/

function parseOffset(text: string): number | undefined {
  if (!OFFSET.test(text)) return undefined
  const offset = Number(text)
  return Number.isSafeInteger(offset) ? offset : undefined
}

function parseInstant(text: string): Date | undefined {
  if (!INSTANT.test(text)) return undefined
  const at = new Date(text)
  return Number.isNaN(at.getTime()) ? undefined : at
}

export class ReplayArgumentError extends Error {
  override name = 'ReplayArgumentError'
}

/** `first`, `last`, `next`, an offset, or an ISO-8601 instant with a zone (`2026-11-27T00:00:00+09:00`). */
export function parseStart(text: string): StreamStart {
  if (text === 'first' || text === 'last' || text === 'next') return { kind: text }
  const offset = parseOffset(text)
  if (offset !== undefined) return { kind: 'offset', offset }
  const at = parseInstant(text)
  if (at !== undefined) return { kind: 'time', at }
  throw new ReplayArgumentError(
    `--from must be first, last, next, an offset or an ISO-8601 time with a zone (got ${JSON.stringify(text)})`,
  )
}

/** An offset (not printed: the replay stops before it) or an ISO-8601 instant with a zone. */
export function parseEnd(text: string): StreamEnd {
  const offset = parseOffset(text)
  if (offset !== undefined) return { kind: 'offset', offset }
  const at = parseInstant(text)
  if (at !== undefined) return { kind: 'time', at }
  throw new ReplayArgumentError(
    `--until must be an offset or an ISO-8601 time with a zone (got ${JSON.stringify(text)})`,
  )
}

/** Milliseconds that local time in `timeZone` is ahead of UTC at `instant`. */
function zoneOffsetMs(instant: number, timeZone: string): number {
  const parts = new Intl.DateTimeFormat('en-US', {
    timeZone,
    hourCycle: 'h23',
    year: 'numeric',
    month: 'numeric',
    day: 'numeric',
    hour: 'numeric',
    minute: 'numeric',
    second: 'numeric',
  }).formatToParts(new Date(instant))
  const part = (type: Intl.DateTimeFormatPartTypes) => Number(parts.find((p) => p.type === type)?.value)
  const local = Date.UTC(
    part('year'),
    part('month') - 1,
    part('day'),
    part('hour'),
    part('minute'),
    part('second'),
  )
  return local - Math.floor(instant / 1000) * 1000
}

/** The instant a calendar day starts in `timeZone` (twice around, for days on which the offset changes). */
export function startOfDay(day: string, timeZone: string): Date {
  const midnightUtc = Date.parse(`${day}T00:00:00Z`)
  let at = midnightUtc
  for (let i = 0; i < 2; i++) at = midnightUtc - zoneOffsetMs(at, timeZone)
  return new Date(at)
}

/**
 * `yesterday`, `today` or `YYYY-MM-DD`: a calendar day of the business time zone, the days of the sales
 * statistics (docs/api.md), as [start, start of the next day).
 */
export function businessDayWindow(
  text: string,
  timeZone: string,
  now = new Date(),
): { from: Date; until: Date } {
  const today = businessDay(now, timeZone)
  const day = text === 'today' ? today : text === 'yesterday' ? addDays(today, -1) : text
  if (!DAY.test(day) || Number.isNaN(Date.parse(`${day}T00:00:00Z`))) {
    throw new ReplayArgumentError(
      `--day must be yesterday, today or YYYY-MM-DD (got ${JSON.stringify(text)})`,
    )
  }
  return { from: startOfDay(day, timeZone), until: startOfDay(addDays(day, 1), timeZone) }
}

/**
 * Slack for clocks: an event's occurredAt is the app's clock, a stream's timestamps the broker's. Only
 * the point a time replay attaches at uses it; which events are printed is decided by occurredAt alone.
 */
export const CLOCK_SKEW_ALLOWANCE_MS = 60_000

/**
 * The `x-stream-offset` consumer argument. A time attaches at the first chunk the broker wrote at or after
 * it (AMQP timestamps are whole seconds); an event is appended after it occurred, so attaching a little
 * earlier than `--from` sees every event that occurred from then on.
 */
export function streamOffsetArgument(start: StreamStart): unknown {
  switch (start.kind) {
    case 'first':
    case 'last':
    case 'next':
      return start.kind
    case 'offset':
      // `long`: amqplib would encode small numbers as a byte, which RabbitMQ also takes, but be explicit.
      return { '!': 'long', value: start.offset }
    case 'time':
      return {
        '!': 'timestamp',
        value: Math.max(0, Math.floor((start.at.getTime() - CLOCK_SKEW_ALLOWANCE_MS) / 1000)),
      }
  }
}

export type Decision = 'print' | 'skip' | 'stop'

/**
 * Which stream messages a replay prints, by offset and by the event's own time (occurredAt):
 * `[from, until)`. Events are appended in the order they were published, which is not quite the order
 * they occurred in (the relay retries, and after an outage it publishes the backlog), so a time replay
 * stops at the first event that occurred `latenessMs` or more after `until`; the ones in between that
 * occurred at or after `until` are skipped.
 */
export function replayFilter(options: {
  from?: Date
  until?: StreamEnd
  latenessMs: number
}): (offset: number, occurredAt: Date | undefined) => Decision {
  const fromMs = options.from?.getTime()
  const until = options.until
  return (offset, occurredAt) => {
    if (until?.kind === 'offset' && offset >= until.offset) return 'stop'
    if (fromMs === undefined && until?.kind !== 'time') return 'print'
    // An event without a time cannot be placed in a window (never the case for the relay's events).
    if (occurredAt === undefined) return 'skip'
    const at = occurredAt.getTime()
    if (until?.kind === 'time') {
      if (at >= until.at.getTime() + options.latenessMs) return 'stop'
      if (at >= until.at.getTime()) return 'skip'
    }
    if (fromMs !== undefined && at < fromMs) return 'skip'
    return 'print'
  }
}

/**
 * The replay's position on disk: the offset of the next message to read, written after each message is
 * handled (printed or deliberately skipped), so that it is never ahead of the output. Writes are
 * coalesced (the latest wins) and atomic (a temporary file renamed over the old one), so a killed replay
 * leaves the last position it wrote, and a restarted one repeats at most the lines after it: never a gap.
 */
export function createOffsetFile(path: string, stream: string) {
  let wanted: number | undefined
  let written: number | undefined
  let writing: Promise<void> | undefined
  let failure: unknown

  const writeLoop = async () => {
    try {
      while (wanted !== undefined && wanted !== written) {
        const next = wanted
        const temporary = `${path}.${process.pid}.tmp`
        await writeFile(temporary, `${JSON.stringify({ stream, next })}\n`)
        await rename(temporary, path)
        written = next
      }
    } catch (error) {
      failure = error
    } finally {
      writing = undefined
    }
  }

  return {
    /** The stored next offset, or undefined when there is no file yet. */
    async read(): Promise<number | undefined> {
      let text: string
      try {
        text = await readFile(path, 'utf8')
      } catch (error) {
        if ((error as { code?: unknown }).code === 'ENOENT') return undefined
        throw error
      }
      let stored: { stream?: unknown; next?: unknown }
      try {
        stored = JSON.parse(text) as { stream?: unknown; next?: unknown }
      } catch {
        throw new ReplayArgumentError(`${path} is not an offset file of this command`)
      }
      if (stored.stream !== stream) {
        throw new ReplayArgumentError(
          `${path} holds a position in ${String(stored.stream)}, not in ${stream}`,
        )
      }
      if (typeof stored.next !== 'number' || !Number.isSafeInteger(stored.next) || stored.next < 0) {
        throw new ReplayArgumentError(`${path} holds no valid offset`)
      }
      written = stored.next
      return stored.next
    },
    save(next: number) {
      wanted = next
      writing ??= writeLoop()
    },
    /** Resolves when the latest position is on disk; throws if a write failed. */
    async flush(): Promise<void> {
      while (writing !== undefined) await writing
      if (failure !== undefined) throw failure
    },
    get failed() {
      return failure !== undefined
    },
  }
}
