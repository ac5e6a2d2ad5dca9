import cluster from 'node:cluster'
import { AggregatorRegistry, type Registry } from 'prom-client'

const ASK = 'commerce:metrics-request'
const ANSWER = 'commerce:metrics-response'
const ANSWER_TIMEOUT_MS = 5_000

type Answer = { type: typeof ANSWER; id: number; text: string }
const isAnswer = (message: unknown): message is Answer =>
  typeof message === 'object' && message !== null && (message as { type?: unknown }).type === ANSWER

/**
 * In a worker of `npm start`'s cluster, GET /metrics (whichever worker the connection landed on) shows the
 * whole cluster: the worker asks the primary, which gathers every worker's registry (prom-client's
 * AggregatorRegistry, over the cluster's IPC channel) and answers with the sum. Returns the function that
 * asks; this worker's own registry is what it contributes.
 */
export function clusterWorkerExposition(registry: Registry): () => Promise<string> {
  // Constructing one installs prom-client's listener that answers the primary's collection requests.
  new AggregatorRegistry()
  AggregatorRegistry.setRegistries([registry])
  const waiting = new Map<number, (text: string) => void>()
  let next = 0
  process.on('message', (message: unknown) => {
    if (!isAnswer(message)) return
    waiting.get(message.id)?.(message.text)
    waiting.delete(message.id)
  })
  return () =>
    new Promise<string>((resolve, reject) => {
      const id = next++
      const timer = setTimeout(() => {
        waiting.delete(id)
        reject(new Error('the primary did not answer with the cluster metrics'))
      }, ANSWER_TIMEOUT_MS)
      waiting.set(id, (text) => {
        clearTimeout(timer)
        resolve(text)
      })
      process.send?.({ type: ASK, id })
    })
}

/** In the primary: answers workers asking for the cluster's metrics. */
export function serveClusterMetrics(): void {
  const aggregator = new AggregatorRegistry()
  cluster.on('message', (worker, message: unknown) => {
    if (typeof message !== 'object' || message === null) return
    const { type, id } = message as { type?: unknown; id?: unknown }
    if (type !== ASK || typeof id !== 'number') return
    aggregator.clusterMetrics().then(
      (text) => worker.send({ type: ANSWER, id, text }),
      (error: unknown) =>
        worker.send({ type: ANSWER, id, text: `# cluster metrics unavailable: ${String(error)}\n` }),
    )
  })
}
