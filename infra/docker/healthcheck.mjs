// Container health: the function's own readiness (MySQL and Redis answer, not draining). node:20-slim has
// no curl or wget, and a plain script keeps the check identical in the Dockerfile and docker-compose.yml.
const port = process.env.PORT || '8080'
try {
  const response = await fetch(`http://127.0.0.1:${port}/health/ready`, { signal: AbortSignal.timeout(2000) })
  process.exit(response.ok ? 0 : 1)
} catch {
  process.exit(1)
}
