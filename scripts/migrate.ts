import { loadConfig, redactUrl } from '../shared/config'
import { applyMigrations } from '../shared/runtime/deps'
import { exitOnStartupError } from '../shared/runtime/serve'

/** `npm run migrate`: the one migration path used by npm start, tests, CI and deploys. */
try {
  const config = loadConfig()
  await applyMigrations(config)
  process.stdout.write(`Migrations applied to ${redactUrl(config.databaseUrl)}\n`)
} catch (error) {
  exitOnStartupError(error)
}
