import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { entryNames, FUNCTIONS_DIR } from '../shared/runtime/discover'
import { type Bundle, bundleAll, ROOT } from './build'

const TEST_SUPPORT = join(ROOT, 'shared', 'testing')

let outdir: string
let bundles: Bundle[]

beforeAll(async () => {
  outdir = await mkdtemp(join(tmpdir(), 'commerce-bundles-'))
  const functionsDir = fileURLToPath(FUNCTIONS_DIR)
  // What `npm run build` bundles: every function and worker, and the migration runner.
  bundles = await bundleAll(
    [
      ...entryNames().map((name) => ({
        name,
        entry: join(functionsDir, name, 'index.ts'),
        out: `${name}/index`,
      })),
      { name: 'migrate', entry: join(ROOT, 'scripts', 'migrate.ts'), out: 'migrate/index' },
    ],
    outdir,
  )
})
afterAll(async () => {
  if (outdir) await rm(outdir, { recursive: true, force: true })
})

/** The source files a bundle was made from, from its source map, as absolute paths. */
async function sourcesOf(bundle: Bundle): Promise<string[]> {
  const map = JSON.parse(await readFile(`${bundle.outfile}.map`, 'utf8')) as { sources: string[] }
  return map.sources.map((source) => resolve(join(bundle.outfile, '..'), source))
}

describe('production bundles', () => {
  it('contain no test support and no test file', async () => {
    expect(bundles.length).toBeGreaterThan(10)
    for (const bundle of bundles) {
      const sources = await sourcesOf(bundle)
      // The check itself must see the app's own files, or it would pass on an empty list.
      expect(
        sources.some((source) => source.startsWith(join(ROOT, 'shared'))),
        bundle.name,
      ).toBe(true)
      const leaked = sources.filter((source) => source.startsWith(TEST_SUPPORT) || /\.test\.ts$/.test(source))
      expect(leaked, bundle.name).toEqual([])
    }
  })
})
