import { serveFunction } from '../../shared/runtime/serve'
import createApp from './handler'
import { route } from './route'

await serveFunction('product-list', route, createApp)
