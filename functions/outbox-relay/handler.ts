import { createOutboxRelay, type RelayDeps, type RelayOptions } from '../../shared/events/relay'
import type { RunningWorker } from '../../shared/runtime/discover'

/** `options` is for tests (a suffixed topology, faster loops); the service runs with the defaults. */
export default function createOutboxRelayWorker(deps: RelayDeps, options: RelayOptions = {}): RunningWorker {
  return createOutboxRelay(deps, options)
}
