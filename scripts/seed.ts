import { loadConfig } from '../shared/config'
import { buildDeps } from '../shared/runtime/deps'
import { exitOnStartupError } from '../shared/runtime/serve'
import { describeSeed, seedWhenEmpty } from './lib/seed'

/** `npm run seed`: demo products and coupons, only into a database that has no products yet. */
try {
  const deps = await buildDeps(loadConfig(), 'seed')
  const seeded = await seedWhenEmpty(deps.db)
  process.stdout.write(
    seeded ? `${describeSeed(seeded)}\n` : 'The database already has products; nothing seeded.\n',
  )
  await deps.close()
} catch (error) {
  exitOnStartupError(error)
}
