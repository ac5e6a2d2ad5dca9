import { serveWorker } from '../../shared/runtime/serve'
import createWorker from './handler'
import { worker } from './worker'

await serveWorker(worker, createWorker)
