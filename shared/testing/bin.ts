import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url))

/**
 * The npm-installed command `name` as npm would run it from `from` (a folder of the repo): the nearest
 * node_modules/.bin up to the repository root. Workspaces keep their own where a version conflicts
 * (clients/typescript's TypeScript 5 beside the root's 7).
 */
export function binOf(name: string, from = REPO_ROOT): string {
  for (let dir = from; dir.startsWith(REPO_ROOT); dir = dirname(dir)) {
    const bin = join(dir, 'node_modules', '.bin', name)
    if (existsSync(bin)) return bin
    if (dir === REPO_ROOT) break
  }
  throw new Error(`${name} is not installed: run npm ci`)
}

export type RunResult = { code: number; stdout: string; stderr: string }

/** Runs a command to completion; a non-zero exit is a result to assert on, not an exception. */
export function run(
  command: string,
  args: string[],
  options: { cwd?: string; env?: Record<string, string> } = {},
): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(
      command,
      args,
      { cwd: options.cwd ?? REPO_ROOT, env: { ...process.env, ...options.env }, maxBuffer: 32 * 1024 * 1024 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0
        resolve({ code, stdout, stderr })
      },
    )
  })
}
