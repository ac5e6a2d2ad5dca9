import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, relative, resolve, sep } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { ERROR_CODES } from '../shared/errors'

/**
 * The repository stands alone: a clean clone is all a user has, so nothing in it may point outside it, and
 * the contract it documents must be the one the code keeps.
 */

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const THIS_FILE = relative(ROOT, fileURLToPath(import.meta.url))

/** Tracked files and new ones not yet committed (but not ignored ones): what a clone would contain. */
const repositoryFiles = (): string[] =>
  execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard', '-z'], {
    cwd: ROOT,
    encoding: 'utf8',
  })
    .split('\0')
    .filter((path) => path !== '' && existsSync(join(ROOT, path)))

/** Text only: a NUL byte in the first 8 KiB marks a binary file. Lock files are machine-written. */
const textFiles = () =>
  repositoryFiles()
    .filter((path) => path !== THIS_FILE && !path.endsWith('package-lock.json'))
    .map((path) => ({ path, text: readFileSync(join(ROOT, path), 'utf8') }))
    .filter(({ text }) => !text.slice(0, 8192).includes('\0'))

const lineOf = (text: string, index: number) => text.slice(0, index).split('\n').length

const insideRepository = (target: string) => {
  const fromRoot = relative(ROOT, target)
  return fromRoot === '' || !(fromRoot === '..' || fromRoot.startsWith(`..${sep}`))
}

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens. */
const anchorOf = (heading: string) =>
  heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N} _-]/gu, '')
    .replace(/ /g, '-')

const anchorsIn = (markdown: string) =>
  new Set(
    markdown
      .replace(/^```[\s\S]*?^```/gm, '')
      .split('\n')
      .filter((line) => /^#{1,6} /.test(line))
      .map((line) => anchorOf(line.replace(/^#+ /, '').replace(/`/g, ''))),
  )

describe('the repository stands alone', () => {
  const files = textFiles()

  it('has no relative path that leads outside it (such as ../shared beside the clone)', () => {
    expect(files.length).toBeGreaterThan(100)
    const escapes = files.flatMap(({ path, text }) =>
      [...text.matchAll(/(?<![\w.])(?:\.\.\/)+[\w.-][\w./-]*/g)]
        .filter((m) => !insideRepository(resolve(ROOT, dirname(path), m[0])))
        .map((m) => `${path}:${lineOf(text, m.index)}: ${m[0]}`),
    )
    expect(escapes).toEqual([])
  })

  it('cites its own documents, never sections of an outside specification', () => {
    const outside = /\bSPEC\b|\/work\/|seed-infrastructure/g
    const citations = files.flatMap(({ path, text }) =>
      [...text.matchAll(outside)].map((m) => `${path}:${lineOf(text, m.index)}: ${m[0]}`),
    )
    expect(citations).toEqual([])
  })

  it('links only to files that exist and headings that exist, in every Markdown file', () => {
    const broken: string[] = []
    for (const { path, text } of files.filter((file) => file.path.endsWith('.md'))) {
      for (const m of text.matchAll(/\[[^\]]*\]\(([^)\s]+)\)/g)) {
        const link = m[1] as string
        if (/^[a-z][a-z0-9+.-]*:/i.test(link)) continue
        const [target = '', anchor] = link.split('#')
        const file = target === '' ? join(ROOT, path) : resolve(ROOT, dirname(path), target)
        const where = `${path}:${lineOf(text, m.index)}: ${link}`
        if (!insideRepository(file) || !existsSync(file)) broken.push(`${where} (no such file)`)
        else if (anchor && statSync(file).isFile() && !anchorsIn(readFileSync(file, 'utf8')).has(anchor))
          broken.push(`${where} (no such heading)`)
      }
    }
    expect(broken).toEqual([])
  })
})

describe('docs/api.md', () => {
  const api = readFileSync(join(ROOT, 'docs', 'api.md'), 'utf8')

  it('lists exactly the error codes the service answers with, each with its status', () => {
    const rows = [...api.matchAll(/^\| (\d{3})\s+\| `([A-Z_]+)`\s+\|/gm)].map((m) => [m[2], Number(m[1])])
    const codes = Object.entries(ERROR_CODES).map(([code, { status }]) => [code, status])
    expect(rows.sort()).toEqual(codes.sort())
  })

  it('covers conventions, authentication, errors, idempotency and pagination', () => {
    const anchors = anchorsIn(api)
    for (const section of ['conventions', 'authentication', 'errors', 'idempotency', 'pagination'])
      expect(anchors, section).toContain(section)
  })
})
