import { readdirSync, readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { discoverFunctions } from '../shared/runtime/discover'

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8')
const config = readFileSync(new URL('../shared/config.ts', import.meta.url), 'utf8')

const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

describe('README', () => {
  it('maps every HTTP function to its route', async () => {
    for (const fn of await discoverFunctions()) {
      const path = fn.route.path.replace(/:(\w+)/g, '{$1}')
      const row = new RegExp(
        `\\|\\s*\`${fn.route.method} ${escapeRegExp(path)}\`\\s*\\|\\s*\`${fn.name}\`\\s*\\|`,
      )
      expect(readme, fn.name).toMatch(row)
    }
  })

  it('names every function and worker folder', () => {
    const folders = readdirSync(new URL('../functions/', import.meta.url), { withFileTypes: true })
    for (const folder of folders.filter((f) => f.isDirectory()))
      expect(readme).toContain(`\`${folder.name}\``)
  })

  it('documents every configuration variable', () => {
    const names = [...config.matchAll(/^ {2}([A-Z][A-Z0-9_]+):/gm)].map((m) => m[1] as string)
    expect(names.length).toBeGreaterThan(10)
    for (const name of names) expect(readme).toContain(`\`${name}\``)
  })
})
