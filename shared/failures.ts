/**
 * The one place that tells a dependency failure (MySQL, Redis or RabbitMQ lost, closed, reset, timed out,
 * full or shutting down) from everything else. A dependency failure is answered 503 with Retry-After and
 * may be retried; anything else unexpected is a bug and a 500. Drivers report such failures in many
 * shapes, and drizzle wraps mysql2's errors (`Failed query: …` with the driver's error as `cause`), so
 * the whole cause chain is read.
 */

/** Socket-level codes, whichever driver raised them. */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTCONN',
  'ENOTFOUND',
  'EAI_AGAIN',
])

/** mysql2's codes for a connection it lost or could not use, and MySQL's for a server refusing work. */
const MYSQL_CODES = new Set([
  'PROTOCOL_CONNECTION_LOST',
  'PROTOCOL_SEQUENCE_TIMEOUT',
  'PROTOCOL_ENQUEUE_AFTER_FATAL_ERROR',
  'PROTOCOL_ENQUEUE_AFTER_QUIT',
  'ER_SERVER_SHUTDOWN',
  'ER_CONNECTION_KILLED',
  'ER_NET_READ_ERROR',
  'ER_NET_READ_INTERRUPTED',
  'ER_NET_ERROR_ON_WRITE',
  'ER_NET_WRITE_INTERRUPTED',
  // A primary demoted to read-only (a failover in progress): the write must go elsewhere, later.
  'ER_OPTION_PREVENTS_STATEMENT',
  'ER_READ_ONLY_MODE',
])

/** MySQL's "no connection for you": too many connections, server-wide or for this user (1040, 1203, 1226). */
const EXHAUSTED_CODES = new Set([
  'ER_CON_COUNT_ERROR',
  'ER_TOO_MANY_USER_CONNECTIONS',
  'ER_USER_LIMIT_REACHED',
])
/** mysql2's pool refusing to hand out a connection (queue limit, or no waiting allowed). */
const POOL_EXHAUSTED_MESSAGES = new Set(['Queue limit reached.', 'No connections available.'])

/**
 * ioredis: no connection, or a command given up on; Redis replies meaning "not now" (loading after a
 * restart, a replica during failover, a cluster reconfiguring). amqplib: a closed channel or connection.
 * mysql2: a pool closed by a shutdown in progress.
 */
const UNAVAILABLE_MESSAGES =
  /^(Connection is closed|Stream isn't writeable|Command timed out|Reached the max retries per request|LOADING |READONLY |MASTERDOWN |CLUSTERDOWN |TRYAGAIN |Channel closed$|Channel ended|Connection closed|Socket closed abruptly|Heartbeat timeout|Pool is closed)/
const UNAVAILABLE_NAMES = new Set(['MaxRetriesPerRequestError', 'ClusterAllFailedError'])

type Fields = { code?: unknown; name?: unknown; message?: unknown; fatal?: unknown; cause?: unknown }

/** The error and its causes, outermost first (bounded: a cause chain can be cyclic). */
function* chain(error: unknown): Generator<Fields> {
  let current: unknown = error
  for (let depth = 0; depth < 8 && current !== null && typeof current === 'object'; depth++) {
    yield current as Fields
    current = (current as Fields).cause
  }
}

/** MySQL refused a connection because it or the pool is full: worth a short, jittered retry. */
export function isConnectionExhausted(error: unknown): boolean {
  for (const e of chain(error)) {
    if (typeof e.code === 'string' && EXHAUSTED_CODES.has(e.code)) return true
    if (typeof e.message === 'string' && POOL_EXHAUSTED_MESSAGES.has(e.message)) return true
  }
  return false
}

/** A lost, closed, reset, timed-out, exhausted or unavailable MySQL, Redis or RabbitMQ. */
export function isDependencyFailure(error: unknown): boolean {
  for (const e of chain(error)) {
    // mysql2 marks every error that ends the connection as fatal, including the ones without a code,
    // such as "Can't add new command when connection is in closed state" (a ROLLBACK after a cut).
    if (e.fatal === true) return true
    if (typeof e.code === 'string') {
      if (NETWORK_CODES.has(e.code) || MYSQL_CODES.has(e.code) || EXHAUSTED_CODES.has(e.code)) return true
    }
    if (typeof e.name === 'string' && UNAVAILABLE_NAMES.has(e.name)) return true
    if (typeof e.message === 'string') {
      if (UNAVAILABLE_MESSAGES.test(e.message) || POOL_EXHAUSTED_MESSAGES.has(e.message)) return true
    }
  }
  return false
}
