export type AuthClaims = { userId: number; role: 'user' | 'admin' }

/** Typed per-request variables every handler can read with c.get(...). */
export type AppEnv = {
  Variables: {
    requestId: string
    /** The verified caller, set by the route's auth on `user` and `admin` routes. */
    auth: AuthClaims | undefined
    /** The one verification of this request's Authorization header, shared by rate limit and auth. */
    authAttempt: Promise<AuthClaims> | undefined
  }
}
