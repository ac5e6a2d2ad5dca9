import { Hono } from 'hono'
import type { AppEnv } from './context'
import { DOCS_PAGE_CSP, renderDocsHtml } from './docs-page'
import { buildOpenApiDocument, type DocumentedRoute } from './openapi'

/**
 * `GET /openapi.json` and `GET /docs` for the functions this process serves. Both are built on first
 * request and kept (the functions are fixed for the life of the process): a function that nobody asks
 * for its docs neither spends its start-up time nor its memory on them.
 */
export function createDocsApp(functions: readonly DocumentedRoute[]): Hono<AppEnv> {
  let built: { json: string; html: string } | undefined
  const docs = () => {
    if (!built) {
      const document = buildOpenApiDocument(functions)
      built = { json: JSON.stringify(document), html: renderDocsHtml(document) }
    }
    return built
  }
  const app = new Hono<AppEnv>()
  app.get('/openapi.json', (c) =>
    c.body(docs().json, 200, { 'Content-Type': 'application/json; charset=utf-8' }),
  )
  app.get('/docs', (c) => c.html(docs().html, 200, { 'Content-Security-Policy': DOCS_PAGE_CSP }))
  return app
}
