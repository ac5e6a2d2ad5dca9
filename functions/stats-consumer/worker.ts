import { defineWorker } from '../../shared/runtime/discover'

export const worker = defineWorker({
  name: 'stats-consumer',
  description: 'Applies order events exactly once to the daily per-product sales behind the popular list',
})
