import { createHash } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ERROR_CODES, type ErrorCode } from '../errors'
import type { RuntimeDeps } from '../runtime/deps'
import { discoverFunctions, type HttpFunction } from '../runtime/discover'
import { call, createTestApp, createTestDeps, type TestResponse } from '../testing/harness'
import { TAGS, toOpenApiPath } from './openapi'

let deps: RuntimeDeps
let functions: HttpFunction[]
let page: TestResponse

/** The HTML of the element with this id, up to its closing tag (articles do not nest). */
const article = (id: string) =>
  new RegExp(`<article class="operation" id="${id}">([\\s\\S]*?)</article>`).exec(page.text)?.[1]

beforeAll(async () => {
  deps = await createTestDeps()
  functions = await discoverFunctions()
  page = await call(createTestApp(deps, functions), 'GET', '/docs')
})
afterAll(async () => {
  await deps.close()
})

describe('GET /docs', () => {
  it('navigates the endpoints grouped in the order a client meets them', () => {
    expect(page.status).toBe(200)
    expect(page.headers.get('Content-Type')).toMatch(/^text\/html/)
    const nav = /<nav[^>]*>([\s\S]*?)<\/nav>/.exec(page.text)?.[1] ?? ''
    const groups = [...nav.matchAll(/<h2><a href="#tag-([A-Za-z]+)">/g)].map((m) => m[1])
    expect(groups).toEqual(['Products', 'Balance', 'Coupons', 'Orders', 'Admin'])
    expect(TAGS.map((tag) => tag.name)).toEqual(groups)
    for (const fn of functions) {
      // Each link sits under its own tag's heading.
      const group = nav.split('<h2>').find((part) => part.includes(`href="#${fn.name}"`))
      expect(group, fn.name).toContain(`href="#tag-${fn.route.tag}"`)
      expect(page.text).toContain(`<section class="tag" id="tag-${fn.route.tag}">`)
    }
  })

  it('shows per endpoint its reference, an example curl request and response, and a try-it form', () => {
    for (const fn of functions) {
      const html = article(fn.name)
      if (!html) throw new Error(`no article for ${fn.name}`)
      const path = toOpenApiPath(fn.route.path)
      expect(html).toContain(`<code>${path}</code>`)
      const curl = /<pre class="curl"><code>([\s\S]*?)<\/code><\/pre>/.exec(html)?.[1] ?? ''
      const examplePath = path.replace(/\{(\w+)\}/g, (_, name: string) =>
        String(fn.route.example?.params?.[name]),
      )
      expect(curl, fn.name).toContain(`</span>${examplePath}`)
      if (fn.route.method !== 'GET') expect(curl).toContain(`curl -X ${fn.route.method}`)
      if (fn.route.access !== 'public') expect(curl).toContain('Authorization: Bearer $TOKEN')
      if (fn.route.idempotent) expect(curl).toContain(`Idempotency-Key: ${fn.name}-0001`)
      if (fn.route.body) expect(curl).toContain('-d &#39;{')
      const response = /<pre class="response"><code>([\s\S]*?)<\/code><\/pre>/.exec(html)?.[1]
      expect(response, fn.name).toBe(
        JSON.stringify(fn.route.example?.response, null, 2)
          .replace(/&/g, '&amp;')
          .replace(/</g, '&lt;')
          .replace(/>/g, '&gt;')
          .replace(/"/g, '&quot;')
          .replace(/'/g, '&#39;'),
      )
      expect(html).toContain(
        `<form class="try-form" data-method="${fn.route.method}" data-path="${path}"${fn.route.access === 'public' ? '' : ' data-auth="bearer"'}>`,
      )
    }
  })

  it('has an anchor for every error code, with its status and title', () => {
    for (const code of Object.keys(ERROR_CODES) as ErrorCode[]) {
      const row = new RegExp(`<tr id="error-${code}">(.*?)</tr>`).exec(page.text)?.[1]
      expect(row, code).toBeDefined()
      expect(row).toContain(`<td>${ERROR_CODES[code].status}</td>`)
      expect(row).toContain(ERROR_CODES[code].title.replace(/'/g, '&#39;'))
    }
  })

  it('runs only its own inline style and script, and links nowhere off the host', () => {
    const csp = page.headers.get('Content-Security-Policy') ?? ''
    const hash = (text: string) => `'sha256-${createHash('sha256').update(text).digest('base64')}'`
    const style = /<style>([\s\S]*?)<\/style>/.exec(page.text)?.[1] ?? ''
    const script = /<script>([\s\S]*?)<\/script>/.exec(page.text)?.[1] ?? ''
    expect(csp).toContain("default-src 'none'")
    expect(csp).toContain(`style-src ${hash(style)}`)
    expect(csp).toContain(`script-src ${hash(script)}`)
    expect(csp).toContain("connect-src 'self'")
    expect(page.text.match(/<script/g)).toHaveLength(1)
    expect(page.text).not.toMatch(/<link|<img|<iframe|\ssrc=|url\(|@import/i)
    const links = [...page.text.matchAll(/href="([^"]*)"/g)].map((m) => m[1] as string)
    for (const href of links) expect(href).toMatch(/^(#|\/openapi\.json$)/)
  })

  it('is the page problem JSON links to', async () => {
    const app = createTestApp(deps, functions)
    const res = await call(app, 'GET', '/v1/products/0')
    const type = (res.body as { type: string }).type
    expect(type).toBe('/docs#error-VALIDATION_FAILED')
    const docs = await call(app, 'GET', type.split('#')[0] as string)
    expect(docs.text).toContain(`id="${type.split('#')[1]}"`)
  })
})
