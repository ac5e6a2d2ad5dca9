import { serveFunction } from '../../shared/runtime/serve'
import createApp from './handler'
import { route } from './route'

await serveFunction('admin-coupon-create', route, createApp)
