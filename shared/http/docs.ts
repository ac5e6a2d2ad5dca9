import { Hono } from 'hono'
import type { AppEnv } from './context'
import { DOCS_PAGE_CSP, renderDocsHtml } from './docs-page'
import { buildOpenApiDocument, type DocumentedRoute } from './openapi'

/**
 * `GET /openapi.json` and `GET /docs` for the functions this process serves. Both are built once: the
 * functions are fixed for the life of the process.
 */
export function createDocsApp(functions: readonly DocumentedRoute[]): Hono<AppEnv> {
  const document = buildOpenApiDocument(functions)
  const json = JSON.stringify(document)
  const html = renderDocsHtml(document)
  const app = new Hono<AppEnv>()
  app.get('/openapi.json', (c) => c.body(json, 200, { 'Content-Type': 'application/json; charset=utf-8' }))
  app.get('/docs', (c) => c.html(html, 200, { 'Content-Security-Policy': DOCS_PAGE_CSP }))
  return app
}
