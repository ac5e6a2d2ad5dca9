import { defineConfig } from 'drizzle-kit'

// Generation only: migrations are applied by scripts/migrate.ts, never by drizzle-kit push.
export default defineConfig({
  dialect: 'mysql',
  schema: './shared/db/schema/index.ts',
  out: './shared/db/migrations',
})
