/**
 * Worker thread of `WorkerPreparer` (prepare.ts): parses, maps, encodes and gzips batches in the
 * order they arrive, and transfers each body back to the main thread.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { Resource } from '../model.js';
import type { RepairReason } from './langfuse-map.js';
import { BatchEncoder, prepareInWorker, type PrepareRequest, type WorkerData } from './prepare.js';

const { options } = workerData as WorkerData;
const repairs = new Map<RepairReason, number>();
const encoder = new BatchEncoder(options, (reason) => repairs.set(reason, (repairs.get(reason) ?? 0) + 1));
const resources = new Map<number, Resource>();

parentPort!.on('message', (m: PrepareRequest) => {
  const { response, transfer } = prepareInWorker(encoder, options.compression, resources, m, repairs);
  parentPort!.postMessage(response, transfer);
});
