import { parseArgs } from 'node:util'
import { ConfigError, loadConfig } from '../shared/config'
import { mintToken } from '../shared/http/auth'
import { exitOnStartupError } from '../shared/runtime/serve'

const usage = `Usage: npm run token -- --sub <userId> [--role user|admin] [--ttl <seconds>]
Prints an HS256 token signed with JWT_SECRET (the development default when unset).`

try {
  const { values } = parseArgs({
    options: {
      sub: { type: 'string' },
      role: { type: 'string', default: 'user' },
      ttl: { type: 'string', default: '3600' },
      help: { type: 'boolean', short: 'h' },
    },
  })
  if (values.help) {
    process.stdout.write(`${usage}\n`)
    process.exit(0)
  }
  const sub = values.sub ?? ''
  const ttl = values.ttl
  if (!/^[1-9][0-9]{0,15}$/.test(sub) || !Number.isSafeInteger(Number(sub)))
    throw new Error('--sub must be a positive user id')
  if (values.role !== 'user' && values.role !== 'admin') throw new Error('--role must be user or admin')
  if (!/^[1-9][0-9]{0,8}$/.test(ttl)) throw new Error('--ttl must be a positive number of seconds')
  const config = loadConfig()
  const token = await mintToken(config.jwtSecret, {
    sub: Number(sub),
    role: values.role,
    ttlSeconds: Number(ttl),
  })
  process.stdout.write(`${token}\n`)
} catch (error) {
  if (error instanceof ConfigError) exitOnStartupError(error)
  process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n\n${usage}\n`)
  process.exit(2)
}
