/**
 * Natural batching, the rule of the orders' group commit and of the statistics consumer: a request that
 * finds fewer than `concurrency` batches running starts one at the end of the current event-loop turn,
 * with the requests that came in the same turn (the deliveries of one socket read, the orders whose
 * stock-gate lookup answered together), so a quiet process waits for nothing but that turn; requests
 * arriving while they all run wait for one to end, and the next batch takes all of them (up to
 * `maxBatch`). So the batch size follows the load, and the wait is never longer than one batch.
 */
export function createCombiner<Request, Outcome>(
  run: (batch: Request[]) => Promise<Outcome[]>,
  options: {
    maxBatch: number
    concurrency: number
    /**
     * A batch that finds a free slot waits this long for more requests (or until `maxBatch` wait), for
     * work whose result nobody waits on closely (the statistics); 0: to the end of the turn only.
     */
    lingerMs?: number
    onBatch?: (size: number) => void
  },
) {
  type Waiting = { request: Request; resolve(outcome: Outcome): void; reject(error: unknown): void }
  const queue: Waiting[] = []
  let running = 0
  let gathering = false
  let lingering: NodeJS.Timeout | undefined
  const lingerMs = options.lingerMs ?? 0

  const start = () => {
    gathering = false
    clearTimeout(lingering)
    lingering = undefined
    next()
  }

  const next = () => {
    while (running < options.concurrency && queue.length > 0) {
      const batch = queue.splice(0, options.maxBatch)
      running++
      options.onBatch?.(batch.length)
      run(batch.map((w) => w.request))
        .then(
          (outcomes) => {
            for (const [i, w] of batch.entries()) w.resolve(outcomes[i] as Outcome)
          },
          (error: unknown) => {
            for (const w of batch) w.reject(error)
          },
        )
        .finally(() => {
          running--
          next()
        })
    }
  }

  return {
    submit(request: Request): Promise<Outcome> {
      return new Promise((resolve, reject) => {
        queue.push({ request, resolve, reject })
        if (running >= options.concurrency) return
        if (gathering) {
          if (lingering !== undefined && queue.length >= options.maxBatch) start()
          return
        }
        gathering = true
        if (lingerMs > 0) lingering = setTimeout(start, lingerMs)
        else setImmediate(start)
      })
    },
  }
}
