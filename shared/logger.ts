import pino from 'pino'

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent'
type Fields = Record<string, unknown>

export type Logger = {
  debug(message: string, fields?: Fields): void
  info(message: string, fields?: Fields): void
  warn(message: string, fields?: Fields): void
  error(message: string, fields?: Fields): void
  child(fields: Fields): Logger
  /** Writes out what is buffered (the asynchronous destination); resolves once written. */
  flush(): Promise<void>
}

/** Errors become { name, message, code, cause, stack } wherever they sit, so that JSON keeps them. */
function serialise(fields: Fields): Fields {
  let out: Fields | undefined
  for (const key in fields) {
    const value = fields[key]
    if (!(value instanceof Error)) continue
    out ??= { ...fields }
    const code = (value as { code?: unknown }).code
    const cause = value.cause instanceof Error ? value.cause.message : undefined
    out[key] = { name: value.name, message: value.message, code, cause, stack: value.stack }
  }
  return out ?? fields
}

const wrap = (log: pino.Logger): Logger => ({
  debug: (message, fields) => log.debug(fields ?? {}, message),
  info: (message, fields) => log.info(fields ?? {}, message),
  warn: (message, fields) => log.warn(fields ?? {}, message),
  error: (message, fields) => log.error(fields ?? {}, message),
  child: (fields) => wrap(log.child(fields)),
  flush: () => new Promise<void>((resolve) => log.flush(() => resolve())),
})

/**
 * One JSON object per line on stdout, `{ time, level, message, ...fields }`: what log shippers and `jq`
 * read without configuration. pino writes through an asynchronous destination (sonic-boom), so a busy
 * process batches its lines into few writes instead of one blocking write per line; pino flushes it when
 * the process exits. `write` (tests, scripts writing to stderr) gets each line synchronously.
 */
export function createLogger(level: LogLevel, base: Fields = {}, write?: (line: string) => unknown): Logger {
  const destination = write
    ? {
        write: (line: string) => {
          write(line)
        },
      }
    : pino.destination({ dest: 1, sync: false })
  return wrap(
    pino(
      {
        level,
        base,
        messageKey: 'message',
        timestamp: pino.stdTimeFunctions.isoTime,
        formatters: { level: (label) => ({ level: label }), log: serialise },
      },
      destination,
    ),
  )
}
