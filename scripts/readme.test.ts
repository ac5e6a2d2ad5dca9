import { readdirSync, readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { ENV_VARS } from '../shared/config'
import { discoverFunctions } from '../shared/runtime/discover'

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8')

const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

describe('README', () => {
  it('maps every HTTP function to its route, with the access its route declares', async () => {
    // `owner or admin` is a `user` route whose verb checks the owner (another user's order is a 404).
    const accessWords = {
      public: 'public',
      user: '(user|owner or admin)',
      'self-or-admin': 'self or admin',
      admin: 'admin',
    }
    for (const fn of await discoverFunctions()) {
      const path = fn.route.path.replace(/:(\w+)/g, '{$1}')
      const row = new RegExp(
        `\\|\\s*\`${fn.route.method} ${escapeRegExp(path)}\`\\s*\\|\\s*\`${fn.name}\`\\s*\\|\\s*${accessWords[fn.route.access]}\\s*\\|`,
      )
      expect(readme, fn.name).toMatch(row)
    }
  })

  it('names every function and worker folder', () => {
    const folders = readdirSync(new URL('../functions/', import.meta.url), { withFileTypes: true })
    for (const folder of folders.filter((f) => f.isDirectory()))
      expect(readme).toContain(`\`${folder.name}\``)
  })

  it('documents every variable the tests read, with its default', () => {
    const source = readFileSync(new URL('../shared/testing/env.ts', import.meta.url), 'utf8')
    const variables = [...source.matchAll(/process\.env\.(TEST_[A-Z0-9_]+) \?\? '([^']*)'/g)]
    expect(variables.map((m) => m[1])).toEqual(
      expect.arrayContaining(['TEST_DATABASE_URL', 'TEST_REDIS_URL', 'TEST_RABBITMQ_URL']),
    )
    for (const [, name, fallback] of variables)
      expect(readme).toMatch(
        new RegExp(`\\|\\s*\`${name}\`\\s*\\|\\s*\`${escapeRegExp(fallback ?? '')}\`\\s*\\|`),
      )
  })

  it('documents every configuration variable', () => {
    expect(ENV_VARS.length).toBeGreaterThan(10)
    const start = readme.indexOf('## Configuration')
    const configuration = readme.slice(start, readme.indexOf('\n## ', start + 1))
    for (const name of ENV_VARS) expect(configuration).toMatch(new RegExp(`^\\|[^\\n]*\`${name}\``, 'm'))
  })
})
