import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  businessDayWindow,
  CLOCK_SKEW_ALLOWANCE_MS,
  createOffsetFile,
  parseEnd,
  parseStart,
  ReplayArgumentError,
  replayFilter,
  startOfDay,
  streamOffsetArgument,
} from './stream-replay'

let folder: string
beforeAll(async () => {
  folder = await mkdtemp(join(tmpdir(), 'stream-replay-'))
})
afterAll(async () => {
  await rm(folder, { recursive: true, force: true })
})

describe('replay positions', () => {
  it('reads --from as a named point, an offset or an instant with a zone, and nothing else', () => {
    expect(parseStart('first')).toEqual({ kind: 'first' })
    expect(parseStart('next')).toEqual({ kind: 'next' })
    expect(parseStart('0')).toEqual({ kind: 'offset', offset: 0 })
    expect(parseStart('2026-11-27T00:00:00+09:00')).toEqual({
      kind: 'time',
      at: new Date('2026-11-26T15:00:00Z'),
    })
    for (const bad of [
      '',
      'yesterday',
      '-1',
      '1.5',
      '99999999999999999',
      '2026-11-27',
      '2026-11-27T00:00:00',
    ])
      expect(() => parseStart(bad), bad).toThrow(ReplayArgumentError)
    expect(parseEnd('12')).toEqual({ kind: 'offset', offset: 12 })
    expect(() => parseEnd('last')).toThrow(ReplayArgumentError)
  })

  it('attaches a time replay a clock-skew allowance early, in whole seconds', () => {
    const at = new Date('2026-11-27T00:00:00.900Z')
    expect(streamOffsetArgument({ kind: 'time', at })).toEqual({
      '!': 'timestamp',
      value: Math.floor((at.getTime() - CLOCK_SKEW_ALLOWANCE_MS) / 1000),
    })
    expect(streamOffsetArgument({ kind: 'offset', offset: 7 })).toEqual({ '!': 'long', value: 7 })
    expect(streamOffsetArgument({ kind: 'first' })).toBe('first')
  })

  it('finds the start of a business day, also on a day the zone changes its offset', () => {
    expect(startOfDay('2026-11-27', 'Asia/Seoul')).toEqual(new Date('2026-11-26T15:00:00Z'))
    // New York moves to summer time at 02:00 on 2026-03-08: that day starts at UTC-5, the next at UTC-4.
    expect(startOfDay('2026-03-08', 'America/New_York')).toEqual(new Date('2026-03-08T05:00:00Z'))
    expect(startOfDay('2026-03-09', 'America/New_York')).toEqual(new Date('2026-03-09T04:00:00Z'))
    const now = new Date('2026-11-28T01:00:00Z') // 10:00 on the 28th in Seoul
    expect(businessDayWindow('yesterday', 'Asia/Seoul', now)).toEqual({
      from: new Date('2026-11-26T15:00:00Z'),
      until: new Date('2026-11-27T15:00:00Z'),
    })
    expect(() => businessDayWindow('2026-02-30x', 'Asia/Seoul')).toThrow(ReplayArgumentError)
  })
})

describe('replayFilter', () => {
  const from = new Date('2026-11-27T00:00:00Z')
  const until = { kind: 'time' as const, at: new Date('2026-11-28T00:00:00Z') }

  it('prints [from, until) by occurredAt, skips late events inside the lateness, stops past it', () => {
    const decide = replayFilter({ from, until, latenessMs: 60_000 })
    expect(decide(0, new Date('2026-11-26T23:59:59.999Z'))).toBe('skip')
    expect(decide(1, from)).toBe('print')
    expect(decide(2, new Date('2026-11-27T23:59:59.999Z'))).toBe('print')
    expect(decide(3, until.at)).toBe('skip')
    expect(decide(4, new Date('2026-11-28T00:00:59.999Z'))).toBe('skip')
    expect(decide(5, new Date('2026-11-28T00:01:00Z'))).toBe('stop')
    expect(decide(6, undefined)).toBe('skip')
  })

  it('stops before an --until offset and prints everything without a time window', () => {
    const decide = replayFilter({ until: { kind: 'offset', offset: 10 }, latenessMs: 0 })
    expect(decide(9, undefined)).toBe('print')
    expect(decide(10, new Date())).toBe('stop')
  })
})

describe('the offset file', () => {
  it('stores the latest position atomically and reads it back for its own stream only', async () => {
    const path = join(folder, 'a.offset')
    const file = createOffsetFile(path, 'data.platform.stream')
    expect(await file.read()).toBeUndefined()
    for (let next = 1; next <= 50; next++) file.save(next)
    await file.flush()
    expect(JSON.parse(await readFile(path, 'utf8'))).toEqual({ stream: 'data.platform.stream', next: 50 })
    expect(await createOffsetFile(path, 'data.platform.stream').read()).toBe(50)
    await expect(createOffsetFile(path, 'data.platform.stream.staging').read()).rejects.toThrow(
      ReplayArgumentError,
    )
    await writeFile(path, 'not json')
    await expect(createOffsetFile(path, 'data.platform.stream').read()).rejects.toThrow(ReplayArgumentError)
  })

  it('reports a write that fails', async () => {
    const file = createOffsetFile(join(folder, 'missing-folder', 'b.offset'), 'data.platform.stream')
    file.save(1)
    await expect(file.flush()).rejects.toThrow()
    expect(file.failed).toBe(true)
  })
})
