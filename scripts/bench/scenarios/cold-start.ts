import { writeFileSync } from 'node:fs'
import { get } from 'node:http'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { bundleFunction } from '../../build'
import { median, progress } from '../context'
import { freePort, startChild } from '../processes'
import { residentBytes } from '../procfs'
import type { ScenarioReport } from '../report'

const FUNCTION = 'product-get'
const MAX_START_RATIO = 1.5
/** Decimal megabytes: the stricter reading of "1 MB" and "60 MB". */
const MB = 1_000_000
const MAX_BUNDLE_BYTES = 1 * MB
const MAX_IDLE_RSS = 60 * MB
const POLL_MS = 5
const READY_TIMEOUT_MS = 30_000

/** The cold-start ceiling: node running a bare HTTP server, nothing loaded beyond node:http. */
const BARE_SERVER = `import { createServer } from 'node:http'
createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'application/json' })
  res.end('{"status":"ready"}')
}).listen(Number(process.env.PORT), '127.0.0.1')
`

/** One GET of /health/ready: its status, or 0 when nothing answers yet. */
const probe = (port: number) =>
  new Promise<number>((resolve) => {
    const request = get({ host: '127.0.0.1', port, path: '/health/ready', agent: false }, (response) => {
      response.resume()
      response.on('end', () => resolve(response.statusCode ?? 0))
      response.on('error', () => resolve(0))
    })
    request.setTimeout(2_000, () => request.destroy())
    request.on('error', () => resolve(0))
  })

/**
 * Starts `node file` and polls /health/ready every few milliseconds: the time from the spawn to the
 * first 200. With `idleSeconds`, it is then left alone that long and its VmRSS read before it is stopped.
 */
async function coldStart(
  name: string,
  file: string,
  env: NodeJS.ProcessEnv,
  logFile: string,
  idleSeconds?: number,
): Promise<{ ms: number; rss?: number }> {
  const port = await freePort()
  const started = performance.now()
  const child = startChild(name, process.execPath, [file], { env: { ...env, PORT: String(port) }, logFile })
  try {
    for (;;) {
      if (child.process.exitCode !== null || child.process.signalCode !== null) {
        throw new Error(`${name} exited while starting:\n${child.tail()}`)
      }
      if ((await probe(port)) === 200) break
      if (performance.now() - started > READY_TIMEOUT_MS)
        throw new Error(`${name} not ready in time:\n${child.tail()}`)
      await sleep(POLL_MS)
    }
    const ms = performance.now() - started
    if (idleSeconds === undefined) return { ms }
    await sleep(idleSeconds * 1000)
    const pid = child.process.pid
    const rss = pid === undefined ? undefined : residentBytes(pid)
    if (rss === undefined) throw new Error(`${name}: no VmRSS in /proc/${pid}/status`)
    return { ms, rss }
  } finally {
    await child.stop()
  }
}

const mb = (bytes: number) => `${(bytes / MB).toFixed(2)} MB`

/**
 * 7 and 8. The product-get function as it is deployed (bundled by the project's build into a temp dir)
 * started cold, against node running a bare HTTP server, alternating, `runs` times each; its bundle's
 * size, and its resident memory once it has idled after becoming ready.
 */
export async function coldStartAndSize(
  runs: number,
  idleSeconds: number,
  env: NodeJS.ProcessEnv,
  dir: string,
): Promise<ScenarioReport[]> {
  progress(`7. cold start: bundling functions/${FUNCTION} with scripts/build.ts bundleFunction`)
  const bundle = await bundleFunction(FUNCTION, join(dir, 'functions'))
  const bare = join(dir, 'bare-http-server.mjs')
  writeFileSync(bare, BARE_SERVER)
  const bareMs: number[] = []
  const bundleMs: number[] = []
  const rss: number[] = []
  for (let i = 1; i <= runs; i++) {
    const b = await coldStart('bare http server', bare, env, join(dir, 'bare.log'))
    const f = await coldStart(FUNCTION, bundle.outfile, env, join(dir, `${FUNCTION}.log`), idleSeconds)
    bareMs.push(b.ms)
    bundleMs.push(f.ms)
    if (f.rss !== undefined) rss.push(f.rss)
    progress(
      `  run ${i}/${runs}: bare ${b.ms.toFixed(0)} ms, ${FUNCTION} ${f.ms.toFixed(0)} ms, ` +
        `its RSS ${idleSeconds} s after ready ${mb(f.rss ?? 0)}`,
    )
  }
  const bareMedian = median(bareMs)
  const bundleMedian = median(bundleMs)
  const rssMedian = median(rss)
  const startRatio = bundleMedian / bareMedian
  const list = (values: number[]) => values.map((v) => v.toFixed(0)).join(', ')
  return [
    {
      title: '7. cold start',
      method:
        `\`node dist/functions/${FUNCTION}/index.mjs\` (built by scripts/build.ts bundleFunction into a temp dir) ` +
        `vs \`node\` running a bare http.createServer script, from the spawn to the first 200 on /health/ready ` +
        `(polled every ${POLL_MS} ms), alternating, median of ${runs} each; the bundle runs against the bench's ` +
        "database and Redis, in the service's environment",
      targets: [
        {
          scenario: '7. cold start',
          measure: `${FUNCTION} bundle / bare node, to the first 200`,
          measured: `${startRatio.toFixed(2)}x (${bundleMedian.toFixed(0)} vs ${bareMedian.toFixed(0)} ms)`,
          target: `<= ${MAX_START_RATIO.toFixed(1)}x`,
          met: startRatio <= MAX_START_RATIO,
        },
      ],
      details: [`Each run, ms: ${FUNCTION} ${list(bundleMs)}; bare node ${list(bareMs)}.`],
    },
    {
      title: '8. bundle size and idle memory',
      method:
        `the size of that bundle (index.mjs alone; MB = 10^6 bytes), and its VmRSS from /proc/<pid>/status ` +
        `${idleSeconds} s after ready, median over the cold-start runs`,
      targets: [
        {
          scenario: '8. bundle',
          measure: `dist/functions/${FUNCTION}/index.mjs size`,
          measured: `${mb(bundle.bytes)} (${bundle.bytes.toLocaleString('en-US')} bytes)`,
          target: `< ${mb(MAX_BUNDLE_BYTES)}`,
          met: bundle.bytes < MAX_BUNDLE_BYTES,
        },
        {
          scenario: '8. bundle',
          measure: `idle RSS ${idleSeconds} s after ready`,
          measured: mb(rssMedian),
          target: `< ${mb(MAX_IDLE_RSS)}`,
          met: rssMedian < MAX_IDLE_RSS,
        },
      ],
      details: [`VmRSS each run: ${rss.map(mb).join(', ')}.`],
    },
  ]
}
