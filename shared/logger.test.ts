import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'

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
