import { spawnSync } from 'node:child_process'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { eq } from 'drizzle-orm'
import { type Browser, chromium, type Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { balances } from '../db/schema'
import { ERROR_CODES } from '../errors'
import type { RuntimeDeps } from '../runtime/deps'
import { discoverFunctions, type HttpFunction } from '../runtime/discover'
import { listen, type RunningServer } from '../runtime/server'
import { REPO_ROOT } from '../testing/bin'
import { createTestDeps, insertProduct, tokenFor, uniqueUserId } from '../testing/harness'
import { createServiceApp } from './app'

/**
 * The docs page as a reader gets it: headless Chromium (the Debian package, driven by playwright-core;
 * CHROMIUM_PATH to use another build) against the real service on a port of its own.
 */
const CHROMIUM = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser'].find(
  (bin) => bin !== undefined && spawnSync(bin, ['--version'], { stdio: 'ignore' }).status === 0,
)
const SKIP = CHROMIUM ? '' : ' (skipped: Chromium is not installed; apt-get install -y chromium)'
const SCREENSHOT = join(REPO_ROOT, 'artifacts', 'docs.png')

let deps: RuntimeDeps
let functions: HttpFunction[]
let server: RunningServer
let browser: Browser
let page: Page
let origin: string
const requested: string[] = []
const problems: string[] = []

beforeAll(async () => {
  if (!CHROMIUM) return
  deps = await createTestDeps()
  functions = await discoverFunctions()
  const app = createServiceApp(
    deps,
    functions.map((fn) => fn.create(deps)),
    { routes: functions },
  )
  server = await listen(app, 0, '127.0.0.1')
  origin = `http://127.0.0.1:${server.port}`
  // Running as root (CI, containers) needs --no-sandbox; the page is our own.
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] })
  page = await browser.newPage({ viewport: { width: 1440, height: 900 } })
  page.on('request', (request) => requested.push(request.url()))
  // A CSP violation (anything the page tried to load or run that is not its own) is a console error.
  page.on('console', (message) => {
    if (message.type() === 'error' || message.type() === 'warning') problems.push(message.text())
  })
  page.on('pageerror', (error) => problems.push(error.message))
  const response = await page.goto(`${origin}/docs`, { waitUntil: 'load' })
  expect(response?.status()).toBe(200)
})
afterAll(async () => {
  await browser?.close()
  await server?.close()
  await deps?.close()
})

/** Opens the try-it form of one endpoint, fills it, sends it, and returns what the page shows. */
async function tryIt(name: string, fields: Record<string, string>, body?: string) {
  const operation = page.locator(`article#${name}`)
  const details = operation.locator('details.try')
  if ((await details.getAttribute('open')) === null) await details.locator('summary').click()
  for (const [field, value] of Object.entries(fields)) {
    await operation.locator(`input[data-name="${field}"]`).fill(value)
  }
  if (body !== undefined) await operation.locator('textarea').fill(body)
  await operation.locator('button[type="submit"]').click()
  // The script empties data-status when it sends and sets it once the response is in: an explicit
  // signal, not a sleep.
  const result = operation.locator('.try-result[data-status]:not([data-status=""])')
  await result.waitFor()
  return { status: await result.getAttribute('data-status'), text: (await result.textContent()) ?? '' }
}

describe('GET /docs in a real browser', () => {
  it.skipIf(!CHROMIUM)(`shows the endpoints grouped in the order a client meets them${SKIP}`, async () => {
    const groups = await page.locator('nav h2 a[href^="#tag-"]').allTextContents()
    expect(groups).toEqual(['Products', 'Balance', 'Coupons', 'Orders', 'Admin'])
    for (const fn of functions) {
      expect(await page.locator(`nav a[href="#${fn.name}"]`).count(), fn.name).toBe(1)
      expect(await page.locator(`article#${fn.name} pre.curl`).isVisible(), fn.name).toBe(true)
      expect(await page.locator(`article#${fn.name} pre.response`).isVisible(), fn.name).toBe(true)
    }
    for (const code of Object.keys(ERROR_CODES)) {
      expect(await page.locator(`tr#error-${code}`).count(), code).toBe(1)
    }
    // The examples show this host once the page's own script has run.
    expect(await page.locator('article#product-list pre.curl').textContent()).toContain(
      `curl "${origin}/v1/products`,
    )
    await mkdir(join(REPO_ROOT, 'artifacts'), { recursive: true })
    await page.screenshot({ path: SCREENSHOT, fullPage: true })
  })

  it.skipIf(!CHROMIUM)(`sends a request from the page and shows the response${SKIP}`, async () => {
    const productId = await insertProduct(deps, { name: 'Docs page test product', price: 4_200 })
    const found = await tryIt('product-get', { productId: String(productId) })
    expect(found.status).toBe('200')
    expect(found.text).toContain('"name": "Docs page test product"')
    expect(found.text).toMatch(/X-Request-Id: \S+/)

    const refused = await tryIt('product-get', { productId: '01' })
    expect(refused.status).toBe('400')
    expect(refused.text).toContain('"code": "VALIDATION_FAILED"')
  })

  it.skipIf(!CHROMIUM)(`sends the bearer token given at the top of the page${SKIP}`, async () => {
    const userId = uniqueUserId()
    const token = await tokenFor(deps, userId)
    const anonymous = await tryIt('balance-charge', { userId: String(userId) }, '{"amount": 5000}')
    expect(anonymous.status).toBe('401')

    await page.locator('#token').fill(token)
    const charged = await tryIt('balance-charge', { userId: String(userId) }, '{"amount": 5000}')
    expect(charged.status).toBe('200')
    expect(charged.text).toContain('"balance": 5000')
    const [balance] = await deps.db.select().from(balances).where(eq(balances.userId, userId))
    expect(balance?.balance).toBe(5_000)
  })

  it.skipIf(!CHROMIUM)(`needs nothing from outside the host${SKIP}`, () => {
    expect(requested.length).toBeGreaterThan(0)
    for (const url of requested) expect(new URL(url).origin, url).toBe(origin)
    // Chromium logs the try-it's own 400 and 401 as failed loads; anything else (a CSP refusal, a
    // script error) is a problem of the page.
    const answered = /^Failed to load resource: the server responded with a status of 4\d\d/
    expect(problems.filter((text) => !answered.test(text))).toEqual([])
  })
})
