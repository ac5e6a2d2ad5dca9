import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { type Diagnostic, DiagnosticSeverity, Parser } from '@asyncapi/parser'

/*
 * The published event contract, docs/events.asyncapi.yaml, read back for tests: its payload schemas check
 * real messages taken from RabbitMQ, so the document cannot drift from what the relay sends.
 */

export const ASYNCAPI_DOCUMENT = fileURLToPath(new URL('../../docs/events.asyncapi.yaml', import.meta.url))

export type JsonSchema = { [key: string]: unknown }

export async function loadEventContract(path = ASYNCAPI_DOCUMENT) {
  const { document, diagnostics } = await new Parser().parse(readFileSync(path, 'utf8'))
  const errors = diagnostics.filter((d: Diagnostic) => d.severity === DiagnosticSeverity.Error)
  if (document === undefined || errors.length > 0) {
    const lines = errors.map((d) => `${d.path.join('.')}: ${d.message}`)
    throw new Error(`${path} is not a valid AsyncAPI document:\n${lines.join('\n')}`)
  }
  /** Message name (= routing key) → its payload schema, $refs resolved, parser annotations removed. */
  const payloads = new Map<string, JsonSchema>()
  for (const message of document.messages().all()) {
    const name = message.name()
    const payload = message.payload()?.json()
    if (name !== undefined && payload !== undefined)
      payloads.set(name, stripAnnotations(payload) as JsonSchema)
  }
  return { document, diagnostics, payloads }
}

/** Drops what documents a schema without constraining it (descriptions, examples, x- extensions). */
export function stripAnnotations(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(stripAnnotations)
  if (schema === null || typeof schema !== 'object') return schema
  return Object.fromEntries(
    Object.entries(schema)
      .filter(
        ([key]) => !['description', 'title', 'examples', '$schema'].includes(key) && !key.startsWith('x-'),
      )
      .map(([key, value]) => [key, key === 'const' || key === 'enum' ? value : stripAnnotations(value)]),
  )
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
const DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/

const typeOf = (value: unknown) =>
  value === null
    ? 'null'
    : Array.isArray(value)
      ? 'array'
      : Number.isInteger(value)
        ? 'integer'
        : typeof value === 'number'
          ? 'number'
          : typeof value

/**
 * A small JSON Schema check for the keywords the contract uses (type, const, enum, properties, required,
 * additionalProperties, items, minItems, minimum, maximum, format uuid and date-time, anyOf, oneOf).
 * Unknown keywords fail loudly, so that the document cannot start relying on one this does not check.
 */
export function checkJsonSchema(schema: JsonSchema, value: unknown, path = '$'): string[] {
  const errors: string[] = []
  const known = new Set([
    'type',
    'const',
    'enum',
    'properties',
    'required',
    'additionalProperties',
    'items',
    'minItems',
    'minimum',
    'maximum',
    'format',
    'anyOf',
    'oneOf',
  ])
  for (const key of Object.keys(schema))
    if (!known.has(key)) errors.push(`${path}: unsupported keyword ${key}`)
  const actual = typeOf(value)
  if (typeof schema.type === 'string') {
    const ok = schema.type === actual || (schema.type === 'number' && actual === 'integer')
    if (!ok) return [...errors, `${path}: expected ${schema.type}, got ${actual}`]
  }
  if ('const' in schema && schema.const !== value)
    errors.push(`${path}: expected ${JSON.stringify(schema.const)}`)
  if (Array.isArray(schema.enum) && !schema.enum.includes(value)) errors.push(`${path}: not one of the enum`)
  if (typeof schema.minimum === 'number' && typeof value === 'number' && value < schema.minimum)
    errors.push(`${path}: below ${schema.minimum}`)
  if (typeof schema.maximum === 'number' && typeof value === 'number' && value > schema.maximum)
    errors.push(`${path}: above ${schema.maximum}`)
  if (schema.format === 'uuid' && (typeof value !== 'string' || !UUID.test(value)))
    errors.push(`${path}: not a uuid`)
  if (schema.format === 'date-time' && (typeof value !== 'string' || !DATE_TIME.test(value)))
    errors.push(`${path}: not a date-time`)
  if (actual === 'object' && value !== null && typeof value === 'object' && !Array.isArray(value)) {
    const record = value as Record<string, unknown>
    const properties = (schema.properties ?? {}) as Record<string, JsonSchema>
    for (const name of (schema.required ?? []) as string[]) {
      if (!(name in record)) errors.push(`${path}.${name}: required`)
    }
    for (const [name, item] of Object.entries(record)) {
      const property = properties[name]
      if (property !== undefined) errors.push(...checkJsonSchema(property, item, `${path}.${name}`))
      else if (schema.additionalProperties === false) errors.push(`${path}.${name}: not allowed`)
    }
  }
  if (Array.isArray(value)) {
    if (typeof schema.minItems === 'number' && value.length < schema.minItems)
      errors.push(`${path}: fewer than ${schema.minItems} items`)
    if (schema.items !== undefined) {
      value.forEach((item, i) => {
        errors.push(...checkJsonSchema(schema.items as JsonSchema, item, `${path}[${i}]`))
      })
    }
  }
  for (const keyword of ['anyOf', 'oneOf'] as const) {
    const options = schema[keyword]
    if (!Array.isArray(options)) continue
    const matching = options.filter(
      (option: JsonSchema) => checkJsonSchema(option, value, path).length === 0,
    ).length
    if (keyword === 'anyOf' ? matching === 0 : matching !== 1)
      errors.push(`${path}: does not match ${keyword}`)
  }
  return errors
}
