import { serveFunction } from '../../shared/runtime/serve'
import createApp from './handler'
import { route } from './route'

await serveFunction('coupon-get', route, createApp)
