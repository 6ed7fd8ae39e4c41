/**
 * The codec micro-benchmark, in its own worker process (see runners/codec.ts):
 * our encode and decode paths against bare mqtt-packet on the same packets.
 */
import type { CodecResult } from "../protocol.ts"
import { startWorker } from "../workers.ts"

export const runCodec = async (quick: boolean): Promise<CodecResult> => {
  const worker = startWorker<CodecResult>(
    { role: "codec", packets: quick ? 20_000 : 200_000, rounds: quick ? 3 : 9 },
    { timeoutMs: 120_000 }
  )
  try {
    return await worker.result
  } finally {
    await worker.finish(2_000)
  }
}
