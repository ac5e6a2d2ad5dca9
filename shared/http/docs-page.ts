import { createHash } from 'node:crypto'
import type { JsonSchema } from '@valibot/to-json-schema'
import { ERROR_CODES } from '../errors'
import { ALL_CODES, ERROR_MEANINGS, type OpenApiDocument, type Operation, objectProperties } from './openapi'
import { problemType } from './problem'

/**
 * The /docs page: rendered on the server from the OpenAPI document, so it is one response that needs
 * nothing from another host. Navigation by tag in the order a client meets them, and per operation the
 * reference, an example curl request and response, and a form that sends the request from the page.
 */

/** Shown in examples until the page's script puts the page's own origin there. */
const EXAMPLE_ORIGIN = 'http://localhost:8080'

const escapeHtml = (text: string) =>
  text.replace(
    /[&<>"']/g,
    (ch) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[ch] as string,
  )

/** Inline code spans from `backticks`, and nothing else: descriptions are ours, but escaped anyway. */
const prose = (text: string) => escapeHtml(text).replace(/`([^`]+)`/g, '<code>$1</code>')

const range = (low: number | undefined, high: number | undefined, unit = '') => {
  if (low !== undefined && high !== undefined)
    return low === high ? `${low}${unit}` : `${low}..${high}${unit}`
  if (low !== undefined) return `≥ ${low}${unit}`
  if (high !== undefined) return `≤ ${high}${unit}`
  return undefined
}

/** A one-line reading of a JSON Schema: "integer, 1..100", "string, 1..200 characters, default 20". */
function describeSchema(schema: JsonSchema): string {
  if (schema.$ref) return schema.$ref.split('/').at(-1) ?? schema.$ref
  const variants = schema.anyOf ?? schema.oneOf
  if (variants) {
    return variants
      .map((item) => (typeof item === 'object' ? describeSchema(item) : String(item)))
      .join(' or ')
  }
  const parts: string[] = []
  if (schema.enum) parts.push(`one of ${schema.enum.map((value) => JSON.stringify(value)).join(', ')}`)
  else if (schema.const !== undefined) parts.push(`exactly ${JSON.stringify(schema.const)}`)
  else if (schema.type === 'array' && typeof schema.items === 'object' && !Array.isArray(schema.items)) {
    parts.push(`array of ${schema.items.type === 'object' ? 'objects' : describeSchema(schema.items)}`)
  } else parts.push(Array.isArray(schema.type) ? schema.type.join(' or ') : (schema.type ?? 'any'))
  const numbers = range(schema.minimum, schema.maximum)
  if (numbers) parts.push(numbers)
  const length = range(schema.minLength, schema.maxLength, ' characters')
  if (length) parts.push(length)
  const items = range(schema.minItems, schema.maxItems, ' items')
  if (items) parts.push(items)
  if (schema.format) parts.push(schema.format)
  if (schema.pattern) parts.push(`matching ${schema.pattern}`)
  if (schema.default !== undefined) parts.push(`default ${JSON.stringify(schema.default)}`)
  return parts.join(', ')
}

type FieldRow = { path: string; required: boolean; schema: JsonSchema }

/** Object schemas flattened to dotted rows (`items[].quantity`), which read better than nested JSON. */
function fieldRows(schema: JsonSchema, prefix = ''): FieldRow[] {
  const rows: FieldRow[] = []
  const { properties, required } = objectProperties(schema)
  for (const [name, property] of properties) {
    const path = prefix ? `${prefix}.${name}` : name
    rows.push({ path, required: required.has(name), schema: property })
    if (property.type === 'object') rows.push(...fieldRows(property, path))
    const items = property.items
    if (
      property.type === 'array' &&
      typeof items === 'object' &&
      !Array.isArray(items) &&
      items.type === 'object'
    ) {
      rows.push(...fieldRows(items, `${path}[]`))
    }
  }
  return rows
}

function schemaHtml(schema: JsonSchema): string {
  const rows = schema.type === 'object' ? fieldRows(schema) : []
  if (rows.length === 0) return `<p><code>${escapeHtml(describeSchema(schema))}</code></p>`
  const closed =
    schema.additionalProperties === false ? '<p>Fields not listed here are rejected (400).</p>' : ''
  return `<table><thead><tr><th>field</th><th>required</th><th>type</th></tr></thead><tbody>${rows
    .map(
      (row) =>
        `<tr><td><code>${escapeHtml(row.path)}</code></td><td>${row.required ? 'yes' : 'no'}</td><td>${escapeHtml(
          describeSchema(row.schema),
        )}</td></tr>`,
    )
    .join('')}</tbody></table>${closed}`
}

const STATUS_TEXT: Record<string, string> = { '200': 'OK', '201': 'Created' }

const successOf = (operation: Operation) =>
  Object.entries(operation.responses).find(([status]) => status.startsWith('2'))

const shellQuote = (text: string) => `'${text.replace(/'/g, `'\\''`)}'`

/** The example request as curl, over several lines; the origin is a span the page's script rewrites. */
function curlHtml(path: string, method: string, operation: Operation): string {
  let url = escapeHtml(path)
  const query = new URLSearchParams()
  for (const p of operation.parameters) {
    if (p.in === 'path') {
      const value = p.example === undefined ? `<${p.name}>` : String(p.example)
      url = url.replace(`{${escapeHtml(p.name)}}`, escapeHtml(encodeURIComponent(value)))
    }
    if (p.in === 'query' && p.example !== undefined) query.set(p.name, String(p.example))
  }
  const search = query.toString() === '' ? '' : `?${query}`
  const lines = [
    `curl${method === 'get' ? '' : ` -X ${method.toUpperCase()}`} "<span class="origin">${EXAMPLE_ORIGIN}</span>${url}${escapeHtml(search)}"`,
  ]
  if (operation.security.length > 0) lines.push('-H "Authorization: Bearer $TOKEN"')
  for (const p of operation.parameters) {
    if (p.in === 'header') lines.push(escapeHtml(`-H ${shellQuote(`${p.name}: ${String(p.example ?? '')}`)}`))
  }
  const body = operation.requestBody?.content['application/json']
  if (body) {
    lines.push(
      escapeHtml("-H 'Content-Type: application/json'"),
      escapeHtml(`-d ${shellQuote(JSON.stringify(body.example ?? {}))}`),
    )
  }
  return lines.join(' \\\n  ')
}

/** A form the page's script sends with fetch, prefilled with the example request. */
function tryItHtml(path: string, method: string, operation: Operation): string {
  const inputs = operation.parameters.map((p) => {
    const value = p.in === 'header' || p.example === undefined ? '' : String(p.example)
    const placeholder =
      p.schema.default !== undefined
        ? `default ${String(p.schema.default)}`
        : p.in === 'header'
          ? `optional, e.g. ${String(p.example ?? '')}`
          : ''
    return `<label>${escapeHtml(p.name)} <small>(${p.in})</small><input data-in="${p.in}" data-name="${escapeHtml(
      p.name,
    )}" value="${escapeHtml(value)}" placeholder="${escapeHtml(placeholder)}"${p.required ? ' required' : ''}></label>`
  })
  const body = operation.requestBody?.content['application/json']
  if (body) {
    inputs.push(
      `<label>body <small>(application/json)</small><textarea rows="6" spellcheck="false">${escapeHtml(
        JSON.stringify(body.example ?? {}, null, 2),
      )}</textarea></label>`,
    )
  }
  const auth = operation.security.length > 0 ? ' data-auth="bearer"' : ''
  const tokenNote =
    operation.security.length > 0
      ? '<p class="note">Sent with the bearer token from the box at the top of the navigation.</p>'
      : ''
  return `<details class="try"><summary>Try it</summary>
<form class="try-form" data-method="${method.toUpperCase()}" data-path="${escapeHtml(path)}"${auth}>
${inputs.join('\n')}
${tokenNote}<button type="submit">Send ${method.toUpperCase()} request</button>
</form>
<pre class="try-result" aria-live="polite" hidden></pre>
</details>`
}

function parametersHtml(operation: Operation): string {
  if (operation.parameters.length === 0) return ''
  const rows = operation.parameters.map(
    (p) =>
      `<tr><td><code>${escapeHtml(p.name)}</code></td><td>${p.in}</td><td>${p.required ? 'yes' : 'no'}</td><td>${escapeHtml(
        describeSchema(p.schema),
      )}${p.description ? `<br>${prose(p.description)}` : ''}</td></tr>`,
  )
  return `<h4>Parameters</h4><table><thead><tr><th>name</th><th>in</th><th>required</th><th>type</th></tr></thead><tbody>${rows.join(
    '',
  )}</tbody></table>`
}

function responsesHtml(operation: Operation): string {
  const parts = ['<h4>Responses</h4><dl>']
  for (const [status, response] of Object.entries(operation.responses)) {
    const success = response.content?.['application/json']?.schema
    if (success) {
      parts.push(`<dt>${status}</dt><dd>${prose(response.description)}${schemaHtml(success)}</dd>`)
      continue
    }
    const problem = response.content?.['application/problem+json']?.schema
    const codes = (problem?.allOf?.[1] as JsonSchema | undefined)?.properties?.code
    const list = typeof codes === 'object' ? ((codes.enum ?? []) as string[]) : []
    parts.push(
      `<dt>${status}</dt><dd>${list
        .map((code) => `<a href="#error-${escapeHtml(code)}"><code>${escapeHtml(code)}</code></a>`)
        .join(', ')}</dd>`,
    )
  }
  parts.push('</dl>')
  return parts.join('')
}

function operationHtml(path: string, method: string, operation: Operation): string {
  const id = escapeHtml(operation.operationId)
  const body = operation.requestBody?.content['application/json']?.schema
  const success = successOf(operation)
  const example = success?.[1].content?.['application/json']?.example
  return `<article class="operation" id="${id}">
<div class="reference">
<h3>${prose(operation.summary)}</h3>
<p class="endpoint"><span class="method ${method}">${method.toUpperCase()}</span> <code>${escapeHtml(path)}</code> <a class="anchor" href="#${id}" title="Link to this endpoint">#</a></p>
<p>${prose(operation.description)} Function <code>${id}</code>.</p>
${parametersHtml(operation)}
${body ? `<h4>Request body (application/json)</h4>${schemaHtml(body)}` : ''}
${responsesHtml(operation)}
</div>
<div class="examples">
<h4>Example request</h4>
<pre class="curl"><code>${curlHtml(path, method, operation)}</code></pre>
${
  success && example !== undefined
    ? `<h4>Example response <span class="status">${success[0]} ${STATUS_TEXT[success[0]] ?? ''}</span></h4>
<pre class="response"><code>${escapeHtml(JSON.stringify(example, null, 2))}</code></pre>`
    : ''
}
${tryItHtml(path, method, operation)}
</div>
</article>`
}

type Listed = { path: string; method: string; operation: Operation }

function operationsByTag(document: OpenApiDocument) {
  const all: Listed[] = Object.entries(document.paths).flatMap(([path, methods]) =>
    Object.entries(methods).map(([method, operation]) => ({ path, method, operation })),
  )
  return document.tags.map((tag) => ({
    tag,
    operations: all.filter(({ operation }) => operation.tags.includes(tag.name)),
  }))
}

const STYLE = `*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,sans-serif;color:#1f2328;background:#fff}
code,pre,input,textarea{font:13px/1.45 ui-monospace,SFMono-Regular,Menlo,monospace}
a{color:#0550ae}
nav{position:fixed;top:0;bottom:0;left:0;width:18rem;overflow-y:auto;padding:1rem;background:#f6f8fa;border-right:1px solid #d0d7de}
nav .brand{display:block;font-weight:600;font-size:1.05rem;color:inherit;text-decoration:none;margin-bottom:.75rem}
nav h2{font-size:.75rem;text-transform:uppercase;letter-spacing:.05em;color:#57606a;margin:1.1rem 0 .3rem}
nav ul{list-style:none;margin:0;padding:0}
nav li a{display:block;padding:.15rem .3rem;border-radius:4px;text-decoration:none;color:inherit;font-size:13px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
nav li a:hover{background:#eaeef2}
nav label{display:block;font-size:12px;color:#57606a}
nav input{width:100%;margin-top:.2rem;padding:.3rem;border:1px solid #d0d7de;border-radius:4px}
main{margin-left:18rem;padding:1.5rem 2rem;max-width:90rem}
h1{margin-top:0}
section.tag>h2{border-bottom:1px solid #d0d7de;padding-bottom:.3rem;margin-top:2.5rem}
.operation{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:1.5rem;padding:1.25rem 0;border-bottom:1px solid #eaeef2}
.operation h3{margin:0 0 .3rem}
.endpoint code{background:none;font-size:14px}
.anchor{color:#8c959f;text-decoration:none}
.method{display:inline-block;min-width:3.6em;text-align:center;border-radius:4px;padding:0 .3em;font:600 11px/1.8 ui-monospace,monospace;color:#fff;background:#57606a}
.method.get{background:#1a7f37}.method.post{background:#0969da}.method.patch{background:#9a6700}
code{background:#f6f8fa;padding:0 .2em;border-radius:3px}
pre{background:#161b22;color:#e6edf3;padding:.75rem;border-radius:6px;overflow-x:auto;margin:.3rem 0 1rem}
pre code{background:none;padding:0}
table{border-collapse:collapse;margin:.5rem 0;width:100%}
th,td{border:1px solid #d0d7de;padding:.2rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}
dt{font-weight:600}dd{margin:0 0 .5rem 1rem}
.status{font-weight:400;color:#57606a}
.try summary{cursor:pointer;font-weight:600;color:#0550ae}
.try-form{display:grid;gap:.4rem;margin:.5rem 0}
.try-form label{display:grid;gap:.15rem;font-size:13px}
.try-form input,.try-form textarea{padding:.3rem;border:1px solid #d0d7de;border-radius:4px;width:100%}
.try-form button{justify-self:start;padding:.35rem .8rem;border:0;border-radius:6px;background:#1f883d;color:#fff;font-weight:600;cursor:pointer}
.note{font-size:12px;color:#57606a;margin:0}
@media (max-width:70rem){nav{position:static;width:auto;border-right:0}main{margin-left:0;padding:1rem}.operation{grid-template-columns:minmax(0,1fr)}}`

/**
 * Sends a try-it form with fetch to this page's own origin (the CSP's connect-src allows nothing else)
 * and shows the status, the headers a client reads and the body. Plain ES2020, no build step.
 */
const SCRIPT = `for (const el of document.querySelectorAll('.origin')) el.textContent = location.origin
document.addEventListener('submit', async (event) => {
  const form = event.target.closest('form.try-form')
  if (!form) return
  event.preventDefault()
  const result = form.parentElement.querySelector('.try-result')
  let path = form.dataset.path
  const query = new URLSearchParams()
  const headers = {}
  for (const input of form.querySelectorAll('input[data-in]')) {
    const value = input.value.trim()
    if (value === '') continue
    const name = input.dataset.name
    if (input.dataset.in === 'path') path = path.replace('{' + name + '}', encodeURIComponent(value))
    else if (input.dataset.in === 'query') query.append(name, value)
    else headers[name] = value
  }
  const token = document.getElementById('token').value.trim()
  if (form.dataset.auth && token !== '') headers.Authorization = 'Bearer ' + token
  const init = { method: form.dataset.method, headers }
  const body = form.querySelector('textarea')
  if (body) {
    headers['Content-Type'] = 'application/json'
    init.body = body.value
  }
  const search = query.toString()
  result.hidden = false
  result.dataset.status = ''
  result.textContent = 'Sending ' + init.method + ' ' + path + '…'
  try {
    const response = await fetch(path + (search ? '?' + search : ''), init)
    const text = await response.text()
    let shown = text
    try {
      shown = JSON.stringify(JSON.parse(text), null, 2)
    } catch {}
    const lines = [response.status + ' ' + response.statusText]
    for (const name of ['Content-Type', 'X-Request-Id', 'Idempotent-Replayed', 'Retry-After']) {
      const value = response.headers.get(name)
      if (value !== null) lines.push(name + ': ' + value)
    }
    result.textContent = lines.join('\\n') + '\\n\\n' + shown
    result.dataset.status = String(response.status)
  } catch (error) {
    result.textContent = 'The request failed: ' + error.message
    result.dataset.status = 'failed'
  }
})
`

const sha256 = (text: string) => `'sha256-${createHash('sha256').update(text).digest('base64')}'`

/**
 * Only this page's own inline style and script run, and fetch reaches only this host: proof that the
 * page needs nothing from elsewhere, and no injected markup could load or send anything.
 */
export const DOCS_PAGE_CSP = [
  "default-src 'none'",
  `style-src ${sha256(STYLE)}`,
  `script-src ${sha256(SCRIPT)}`,
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ')

/** The reference page of `document`, with an `error-<CODE>` anchor for every problem `type` URI. */
export function renderDocsHtml(document: OpenApiDocument): string {
  const groups = operationsByTag(document)
  const nav = groups
    .map(
      ({ tag, operations }) =>
        `<h2><a href="#tag-${escapeHtml(tag.name)}">${escapeHtml(tag.name)}</a></h2><ul>${operations
          .map(
            ({ path, method, operation }) =>
              `<li><a href="#${escapeHtml(operation.operationId)}" title="${escapeHtml(operation.summary)}"><span class="method ${method}">${method.toUpperCase()}</span> ${escapeHtml(path)}</a></li>`,
          )
          .join('')}</ul>`,
    )
    .join('\n')
  const sections = groups.map(
    ({ tag, operations }) =>
      `<section class="tag" id="tag-${escapeHtml(tag.name)}"><h2>${escapeHtml(tag.name)}</h2>
${tag.description ? `<p>${prose(tag.description)}</p>` : ''}
${operations.map(({ path, method, operation }) => operationHtml(path, method, operation)).join('\n')}
</section>`,
  )
  const errors = ALL_CODES.map((code) => {
    const { status, title } = ERROR_CODES[code]
    // The same string problem JSON carries in `type`, so a client can follow it here.
    const anchor = problemType(code).split('#')[1] as string
    return `<tr id="${escapeHtml(anchor)}"><td><code>${code}</code></td><td>${status}</td><td>${escapeHtml(
      title,
    )}</td><td>${prose(ERROR_MEANINGS[code])}</td></tr>`
  })
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(document.info.title)}: API reference</title>
<style>${STYLE}</style>
</head>
<body>
<nav aria-label="Endpoints">
<a class="brand" href="#top">${escapeHtml(document.info.title)}</a>
<label>Bearer token for “Try it”<input id="token" type="password" autocomplete="off" placeholder="npm run -s token -- --sub 1"></label>
<h2>Guide</h2><ul><li><a href="#authentication">Authentication</a></li><li><a href="#idempotency">Idempotency</a></li><li><a href="#pagination">Pagination</a></li><li><a href="#errors">Errors</a></li></ul>
${nav}
</nav>
<main>
<header id="top">
<h1>${escapeHtml(document.info.title)}</h1>
<p>${prose(document.info.description)} Machine-readable: <a href="/openapi.json">/openapi.json</a> (OpenAPI ${document.openapi}), from which a typed client can be generated.</p>
<p>Requests go to this host (<code><span class="origin">${EXAMPLE_ORIGIN}</span></code>). Request bodies are JSON (<code>Content-Type: application/json</code>), at most 64 KiB; unknown fields are rejected. Every response carries <code>X-Request-Id</code>. Money is an integer number of won; times are ISO-8601 in UTC.</p>
<h2 id="authentication">Authentication</h2>
<p>Product and coupon reads are public. Everything else takes <code>Authorization: Bearer &lt;JWT&gt;</code> (HS256; claims <code>sub</code>, the user id, <code>role</code>, <code>user</code> or <code>admin</code>, and <code>exp</code>). <code>/v1/users/{userId}/…</code> is allowed to that user and to admins. Locally, <code>npm run -s token -- --sub 1</code> prints a token; paste it into the box at the top of the navigation to try the endpoints that need one.</p>
<h2 id="idempotency">Idempotency</h2>
<p>The POSTs that move money or stock take an <code>Idempotency-Key</code> header (1..255 printable ASCII characters). Within 24 hours the same key from the same user on the same path with the same body returns the first response again, with <code>Idempotent-Replayed: true</code>, and does nothing else; a different body gets 422 <a href="#error-IDEMPOTENCY_KEY_REUSED">IDEMPOTENCY_KEY_REUSED</a>.</p>
<h2 id="pagination">Pagination</h2>
<p>Lists take <code>limit</code> (1..100, default 20) and <code>cursor</code>, and answer <code>{ "items": [...], "nextCursor": string | null }</code>; pass <code>nextCursor</code> as <code>cursor</code> for the next page.</p>
</header>
${sections.join('\n')}
<section id="errors">
<h2>Errors</h2>
<p>Every error is <code>application/problem+json</code> with <code>type</code>, <code>title</code>, <code>status</code>, <code>code</code>, <code>detail</code>, <code>instance</code>, <code>requestId</code> and, for validation failures, <code>errors: [{ path, message }]</code>. Branch on <code>code</code>; <code>type</code> links to its row here.</p>
<table><thead><tr><th>code</th><th>status</th><th>title</th><th>meaning</th></tr></thead><tbody>
${errors.join('\n')}
</tbody></table>
</section>
</main>
<script>${SCRIPT}</script>
</body>
</html>
`
}
