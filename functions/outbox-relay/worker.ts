import { defineWorker } from '../../shared/runtime/discover'

export const worker = defineWorker({
  name: 'outbox-relay',
  description: 'Publishes committed outbox events to RabbitMQ with confirms; sweeps and prunes the outbox',
})
