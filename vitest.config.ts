import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['functions/**/*.test.ts', 'shared/**/*.test.ts', 'scripts/**/*.test.ts', 'infra/**/*.test.ts'],
    globalSetup: ['shared/testing/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Tests make their own data with unique ids, so files may run side by side against one database.
    fileParallelism: true,
    reporters: process.env.CI ? ['default', ['json', { outputFile: '.vitest-results.json' }]] : ['default'],
  },
})
