/**
 * Small measuring helpers shared by the workers and the orchestrator.
 */
import type { LatencySummary, ProcessUsage, WorkerMessage } from "./protocol.ts"
import { LINE_PREFIX } from "./protocol.ts"

/**
 * Wall-clock milliseconds with sub-millisecond precision. Comparable across
 * processes on one machine (both read the same system clock at start-up),
 * unlike `performance.now()` alone.
 */
export const now = (): number => performance.timeOrigin + performance.now()

/** Peak RSS and CPU time of this process so far. */
export const usage = (): ProcessUsage => {
  const resources = process.resourceUsage()
  return {
    peakRssMiB: resources.maxRSS / 1024,
    cpuMs: (resources.userCPUTime + resources.systemCPUTime) / 1000
  }
}

/** Prints a message for the orchestrator. */
export const send = (message: WorkerMessage): void => {
  process.stdout.write(`${LINE_PREFIX}${JSON.stringify(message)}\n`)
}

export const median = (values: ReadonlyArray<number>): number => {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

/** p50/p99/max of the first `length` values of `samples` (sorted in place). Nearest-rank percentiles. */
export const latencySummary = (samples: Float64Array, length: number): LatencySummary => {
  if (length === 0) return { p50: Number.NaN, p99: Number.NaN, max: Number.NaN }
  const sorted = samples.subarray(0, length).sort()
  const rank = (p: number) => sorted[Math.min(length - 1, Math.max(0, Math.ceil(p * length) - 1))]
  return { p50: rank(0.5), p99: rank(0.99), max: sorted[length - 1] }
}

/** A payload of `size` bytes of "x". */
export const makePayload = (size: number): Buffer => Buffer.alloc(size, 0x78)

/** A payload of `size` bytes (at least 8) whose first 8 carry the current time, float64 LE. */
export const stampPayload = (size: number): Buffer => {
  const payload = Buffer.allocUnsafe(Math.max(size, 8))
  payload.fill(0x78, 8)
  payload.writeDoubleLE(now(), 0)
  return payload
}

/** The send time written by {@link stampPayload}. */
export const readStamp = (payload: Uint8Array): number =>
  new DataView(payload.buffer, payload.byteOffset, payload.byteLength).getFloat64(0, true)
