'use strict'
// Stands in for @opentelemetry/api in the function bundles (scripts/build.ts): prom-client requires it
// for exemplars on process_cpu_*, which this service does not enable. Nothing here is ever traced.
exports.trace = { getSpan: () => undefined }
exports.context = { active: () => undefined }
