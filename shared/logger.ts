const LEVELS = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 } as const
export type LogLevel = keyof typeof LEVELS
type Fields = Record<string, unknown>

export type Logger = {
  debug(message: string, fields?: Fields): void
  info(message: string, fields?: Fields): void
  warn(message: string, fields?: Fields): void
  error(message: string, fields?: Fields): void
  child(fields: Fields): Logger
}

/** Errors become { name, message, code, stack } so that JSON.stringify keeps them. */
function serialise(fields: Fields): Fields {
  const out: Fields = {}
  for (const [key, value] of Object.entries(fields)) {
    if (value instanceof Error) {
      const code = (value as { code?: unknown }).code
      const cause = value.cause instanceof Error ? value.cause.message : undefined
      out[key] = { name: value.name, message: value.message, code, cause, stack: value.stack }
    } else {
      out[key] = value
    }
  }
  return out
}

/** One JSON object per line on stdout: what log shippers and `jq` read without configuration. */
export function createLogger(
  level: LogLevel,
  base: Fields = {},
  write = (line: string) => process.stdout.write(line),
) {
  const threshold = LEVELS[level]
  const make = (bound: Fields): Logger => {
    const log = (at: Exclude<LogLevel, 'silent'>, message: string, fields: Fields = {}) => {
      if (LEVELS[at] < threshold) return
      write(
        `${JSON.stringify({ time: new Date().toISOString(), level: at, message, ...bound, ...serialise(fields) })}\n`,
      )
    }
    return {
      debug: (m, f) => log('debug', m, f),
      info: (m, f) => log('info', m, f),
      warn: (m, f) => log('warn', m, f),
      error: (m, f) => log('error', m, f),
      child: (fields) => make({ ...bound, ...fields }),
    }
  }
  return make(base)
}
