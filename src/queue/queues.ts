/**
 * Queue names, job payloads, deterministic job ids and connections. Queue keys are hash-tagged
 * (`{<prefix>.<queue>}`) so that each queue lives in one Redis Cluster slot.
 */
import { Queue, type ConnectionOptions, type JobsOptions } from 'bullmq';
import { Cluster, Redis } from 'ioredis';
import type { DeliveryRequest } from '../journey/decide-job.ts';
import type { KeptSend } from '../send-outcome.ts';

export const DELIVER_QUEUE = 'deliver';
export const SCAN_QUEUE = 'scan';

/**
 * A delivery job's data: what to decide again, and any send an earlier attempt completed and
 * could not record (src/send-outcome.ts: sealed, since it names the recipient), to be recorded
 * rather than sent again.
 */
export type DeliverJob = DeliveryRequest & { unrecorded?: KeptSend[] };

/** The key prefix of one queue: a hash tag, so all of the queue's keys share one slot. */
export function queuePrefix(prefix: string, queue: string): string {
  return `{${prefix}.${queue}}`;
}

/**
 * One id per (opportunity, step, closing date, occurrence): a scan that runs twice while the job
 * waits adds nothing. It only saves work: the database refuses a second send on its own.
 * BullMQ ids may not contain ':'; step ids are [a-z0-9_-].
 */
export function deliverJobId(job: DeliverJob): string {
  return `o${job.opportunityId}.${job.stepId}.${job.closingDate ?? 'none'}.${job.occurrence || 'once'}`;
}

export type RedisConnection = Redis | Cluster;

/**
 * A connection for BullMQ: commands wait for Redis to come back instead of failing. With
 * `cluster`, `url` names one node of a Redis Cluster; the others are discovered.
 */
export function redisConnection(url: string, cluster = false): RedisConnection {
  const options = { maxRetriesPerRequest: null, enableReadyCheck: true };
  if (!cluster) return new Redis(url, options);
  const u = new URL(url);
  return new Cluster([{ host: u.hostname, port: Number(u.port || 6379) }], {
    // The slots' masters asked again every 5 s: after a failover the new master is found without
    // waiting for a MOVED reply, which a dead master never sends.
    slotsRefreshInterval: 5_000,
    redisOptions: { ...options, username: u.username || undefined, password: u.password || undefined, tls: u.protocol === 'rediss:' ? {} : undefined },
  });
}

export interface QueueSettings {
  prefix: string;
  attempts: number;
  retryBaseMs: number;
}

export function deliverJobOptions(settings: QueueSettings): JobsOptions {
  return {
    attempts: settings.attempts,
    backoff: { type: 'exponential', delay: settings.retryBaseMs },
    // Finished jobs go at once: a kept job would make a later, legitimate enqueue of the same id
    // a no-op (the contact re-subscribed, the step came due again).
    removeOnComplete: true,
    removeOnFail: true,
  };
}

export function deliverQueue(connection: ConnectionOptions, prefix: string): Queue<DeliverJob> {
  return new Queue<DeliverJob>(DELIVER_QUEUE, { connection, prefix: queuePrefix(prefix, DELIVER_QUEUE) });
}

export function scanQueue(connection: ConnectionOptions, prefix: string): Queue {
  return new Queue(SCAN_QUEUE, { connection, prefix: queuePrefix(prefix, SCAN_QUEUE) });
}
