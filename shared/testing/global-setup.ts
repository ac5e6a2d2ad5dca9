import { loadConfig } from '../config'
import { applyMigrations } from '../runtime/deps'
import { TEST_ENV } from './env'

/** Once per test run: the test database is created if missing and migrated by the same path as npm start. */
export default async function setup() {
  await applyMigrations(loadConfig({ ...process.env, ...TEST_ENV }))
}
