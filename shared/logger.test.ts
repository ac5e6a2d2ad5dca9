import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'
import { createLogger, type RequestLine } from './logger'

const run = promisify(execFile)
const LOGGER = fileURLToPath(new URL('./logger.ts', import.meta.url))

/** Runs `body` in a process of its own with `log` = createLogger('info', { service: 't' }); its stdout. */
async function stdoutOf(body: string): Promise<string> {
  const script = `import { createLogger } from ${JSON.stringify(LOGGER)}\nconst log = createLogger('info', { service: 't' })\n${body}`
  const { stdout } = await run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script])
  return stdout
}

const parsed = (stdout: string) =>
  stdout
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as Record<string, unknown>)

describe('the stdout logger', () => {
  it('writes every line of a turn, in order, one JSON object each, when the turn ends', async () => {
    const lines = parsed(
      await stdoutOf(`for (let i = 0; i < 500; i++) log.info('request', { i })
setTimeout(() => log.warn('later', { path: '"quoted"\\n' }), 10)`),
    )
    expect(lines).toHaveLength(501)
    expect(lines.slice(0, 500).map((line) => line.i)).toEqual([...Array(500).keys()])
    expect(lines[0]).toMatchObject({ level: 'info', message: 'request', service: 't' })
    expect(lines[500]).toMatchObject({ level: 'warn', message: 'later', path: '"quoted"\n' })
  })

  it('writes what the turn logged when the process exits in it', async () => {
    const lines = parsed(
      await stdoutOf(`log.info('one'); log.error('two'); process.exit(3)`).catch(
        (error: { stdout: string }) => error.stdout,
      ),
    )
    expect(lines.map((line) => line.message)).toEqual(['one', 'two'])
  })

  it('has written everything once flush resolves', async () => {
    const stdout = await stdoutOf(`import { writeSync } from 'node:fs'
log.info('before')
await log.flush()
writeSync(1, 'marker\\n')
log.info('after')`)
    expect(
      stdout
        .split('\n')
        .filter(Boolean)
        .map((line) => (line === 'marker' ? line : JSON.parse(line).message)),
    ).toEqual(['before', 'marker', 'after'])
  })
})

describe('the access line', () => {
  const written = (level: 'info' | 'warn', log: (logger: ReturnType<typeof createLogger>) => void) => {
    const lines: string[] = []
    log(createLogger(level, { service: 'product-get' }, (line) => lines.push(line)).child({ worker: 1 }))
    return lines
  }
  const withoutTime = (line: string) => {
    const { time, ...rest } = JSON.parse(line) as Record<string, unknown>
    expect(new Date(String(time)).toISOString()).toBe(time)
    return rest
  }

  it.each<RequestLine>([
    {
      requestId: 'r-1',
      method: 'GET',
      route: '/v1/products/:productId',
      path: '/v1/products/7',
      status: 200,
      durationMs: 0.4,
      userId: undefined,
    },
    {
      requestId: 'r-2',
      method: 'POST',
      route: 'unmatched',
      path: '/v1/"x"\\\n\u2028é',
      status: 404,
      durationMs: 12,
      userId: 42,
    },
  ])('is the line pino writes for info("request", line), key for key and in order', (line) => {
    const [built] = written('info', (logger) => logger.request(line))
    const [pinos] = written('info', (logger) => logger.info('request', line))
    expect(built?.endsWith('\n')).toBe(true)
    expect(Object.entries(withoutTime(built ?? ''))).toEqual(Object.entries(withoutTime(pinos ?? '')))
  })

  it('is not written when info is off', () => {
    const line = {
      requestId: 'r',
      method: 'GET',
      route: '/',
      path: '/',
      status: 200,
      durationMs: 1,
      userId: 1,
    }
    expect(written('warn', (logger) => logger.request(line))).toEqual([])
  })
})
