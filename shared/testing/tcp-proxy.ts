import net from 'node:net'

/**
 * A TCP proxy that a test or the fault suite controls, to fail a dependency the way a network does:
 *
 * - `cut()`: every open connection is closed and new ones are closed as soon as they arrive, until
 *   `restore()`. Closed as a peer that went away closes (FIN), or with `{ reset: true }` as a middlebox or
 *   a rebooted host answers (RST): drivers report the two differently, and both happen.
 * - `cutWhen(match)`: cuts just the one connection whose next client packet matches, before that packet
 *   reaches the server (say, the COMMIT of a transaction).
 * - `delay(ms)`: every chunk, each way, and every new upstream connection waits `ms` first (order kept).
 * - `blackhole()`: connections are accepted but nothing moves either way. Like a partition under TCP,
 *   nothing is lost either: what was sent waits in the socket buffers and flows once restored, unless a
 *   side gave up (timed out and closed) first. New connections wait unconnected until then.
 * - `restore()`: back to a plain relay.
 *
 * The listening port stays ours in every state: closing the listener would free it, and on a busy
 * machine another socket could take it before restore() listens again.
 */
export type TcpProxyState = 'up' | 'cut' | 'delayed' | 'blackholed'

export type TcpProxy = {
  port: number
  readonly state: TcpProxyState
  /** Connections accepted so far, for reports. */
  readonly accepted: number
  cut(options?: { reset?: boolean }): Promise<void>
  /** Resolves once a client packet matched `match` and its connection was cut. */
  cutWhen(match: (chunk: Buffer) => boolean): Promise<void>
  delay(ms: number): Promise<void>
  blackhole(): Promise<void>
  restore(): Promise<void>
  close(): Promise<void>
}

type Direction = { kick(): void }

type Link = {
  client: net.Socket
  upstream: net.Socket | undefined
  directions: Direction[]
  /** Connects upstream when the proxy lets it (at once, after a delay, or after a blackhole). */
  open(): void
}

const close = (socket: net.Socket | undefined, reset: boolean) => {
  if (socket === undefined || socket.destroyed) return
  if (reset && socket.readyState === 'open') socket.resetAndDestroy()
  else socket.destroy()
}

export async function createTcpProxy(targetPort: number, targetHost = '127.0.0.1'): Promise<TcpProxy> {
  let state: TcpProxyState = 'up'
  let cutWithReset = false
  let trigger: ((chunk: Buffer) => boolean) | undefined
  let delayMs = 0
  let accepted = 0
  const links = new Set<Link>()
  const forgetWhenClosed = (link: Link) => {
    if (link.client.destroyed && (link.upstream?.destroyed ?? true)) links.delete(link)
  }

  /** Moves `from`'s chunks to `to` in order, each no earlier than its arrival plus the delay then in force. */
  const relay = (
    from: net.Socket,
    to: () => net.Socket | undefined,
    onIdleClose: () => void,
    onChunk: (chunk: Buffer) => boolean = () => true,
  ): Direction => {
    const queue: Array<{ due: number; chunk: Buffer | null }> = []
    let timer: NodeJS.Timeout | undefined
    let sourceClosed = false
    const pump = () => {
      timer = undefined
      const target = to()
      if (state === 'blackholed' || target === undefined || target.connecting) return
      const now = Date.now()
      while (queue.length > 0 && (queue[0]?.due ?? 0) <= now) {
        const next = queue.shift()
        if (next?.chunk === null) target.end()
        else if (next) target.write(next.chunk)
      }
      const head = queue[0]
      if (head !== undefined) timer = setTimeout(pump, head.due - now)
      else if (sourceClosed) onIdleClose()
    }
    const enqueue = (chunk: Buffer | null) => {
      queue.push({ due: Date.now() + delayMs, chunk })
      if (timer === undefined) pump()
    }
    from.on('data', (chunk: Buffer) => {
      if (onChunk(chunk)) enqueue(chunk)
    })
    from.on('end', () => enqueue(null))
    from.on('close', () => {
      sourceClosed = true
      if (queue.length === 0) onIdleClose()
    })
    return {
      kick() {
        if (timer === undefined) pump()
      },
    }
  }

  const server = net.createServer({ allowHalfOpen: true }, (client) => {
    accepted++
    client.on('error', () => undefined)
    if (state === 'cut') {
      close(client, cutWithReset)
      return
    }
    const link: Link = {
      client,
      upstream: undefined,
      directions: [],
      open() {
        if (link.upstream !== undefined || client.destroyed) return
        const upstream = net.connect({ port: targetPort, host: targetHost, allowHalfOpen: true })
        link.upstream = upstream
        upstream.on('error', () => undefined)
        upstream.on('close', () => forgetWhenClosed(link))
        upstream.on('connect', () => {
          for (const direction of link.directions) direction.kick()
        })
        const toClient = relay(
          upstream,
          () => client,
          () => client.destroy(),
        )
        link.directions.push(toClient)
        if (state === 'blackholed') upstream.pause()
      },
    }
    const toUpstream = relay(
      client,
      () => link.upstream,
      () => link.upstream?.destroy(),
      (chunk) => {
        if (state === 'blackholed' || trigger === undefined || !trigger(chunk)) return true
        trigger = undefined
        client.destroy()
        link.upstream?.destroy()
        return false
      },
    )
    link.directions.push(toUpstream)
    links.add(link)
    client.on('close', () => forgetWhenClosed(link))
    if (state === 'blackholed') {
      client.pause()
      return
    }
    if (state === 'delayed' && delayMs > 0) setTimeout(() => link.open(), delayMs)
    else link.open()
  })
  server.on('error', () => undefined)

  const port = await new Promise<number>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject)
      const address = server.address()
      resolve(typeof address === 'object' && address !== null ? address.port : 0)
    })
  })

  const closeAll = () => {
    for (const link of links) {
      close(link.client, cutWithReset)
      close(link.upstream, cutWithReset)
    }
    links.clear()
  }

  const restore = async () => {
    const wasBlackholed = state === 'blackholed'
    state = 'up'
    delayMs = 0
    if (!wasBlackholed) return
    for (const link of links) {
      if (link.client.destroyed) continue
      link.client.resume()
      link.upstream?.resume()
      link.open()
      for (const direction of link.directions) direction.kick()
    }
  }

  return {
    port,
    get state() {
      return state
    },
    get accepted() {
      return accepted
    },
    async cut(options = {}) {
      state = 'cut'
      cutWithReset = options.reset === true
      closeAll()
    },
    cutWhen(match) {
      return new Promise((resolve) => {
        trigger = (chunk) => {
          if (!match(chunk)) return false
          resolve()
          return true
        }
      })
    },
    async delay(ms: number) {
      await restore()
      state = ms > 0 ? 'delayed' : 'up'
      delayMs = ms
    },
    async blackhole() {
      state = 'blackholed'
      for (const link of links) {
        link.client.pause()
        link.upstream?.pause()
      }
    },
    restore,
    async close() {
      state = 'cut'
      closeAll()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
