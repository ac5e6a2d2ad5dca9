import type { Logger } from '../logger'

export type AuthClaims = { userId: number; role: 'user' | 'admin' }

/** Typed per-request variables every handler can read with c.get(...). */
export type AppEnv = {
  Variables: {
    requestId: string
    logger: Logger
    auth: AuthClaims | undefined
  }
}
