/**
 * Workload 1 where the client is the bottleneck (our addition, not the
 * issue's definition): the same window of 1,000 at QoS 0, 1 and 2, 64-byte
 * payloads, but against a minimal acknowledging peer in its own process
 * (runners/peer.ts) instead of mosquitto, which sets the rate of workload 1
 * proper. The publisher's rate runs from its first publish to the last
 * acknowledgement; the subscriber's from the peer's first PUBLISH to the
 * last message the subscriber received.
 */
import type { NodeClient, PeerResult, PublishResult, QoS, SubscribeResult } from "../protocol.ts"
import { startWorker } from "../workers.ts"
import { RATE, type Measurement, type Metric, type RunContext, type Variant } from "./shared.ts"

const WINDOW = 1_000
const PAYLOAD = 64
const TIMEOUT_MS = 60_000

const CPU: Metric = { key: "cpuMs", label: "client CPU ms", unit: "ms", better: "lower", digits: 0 }

type Side = "pub" | "sub"

const run = async (context: RunContext, client: NodeClient, side: Side, qos: QoS, count: number): Promise<Measurement> => {
  const hardLimit = TIMEOUT_MS + 15_000
  const peer = startWorker<PeerResult>(
    { role: "peer", count: side === "sub" ? count : 0, window: WINDOW, payloadSize: PAYLOAD, timeoutMs: hardLimit },
    { timeoutMs: hardLimit }
  )
  try {
    const port = await peer.ready
    const url = `mqtt://127.0.0.1:${port}`
    const topic = context.topic()
    const profileDir = client === "effect" ? context.profileDir : undefined
    if (side === "pub") {
      const worker = startWorker<PublishResult>({
        role: "pub",
        client,
        url,
        topic,
        qos,
        count,
        clients: 1,
        payloadSize: PAYLOAD,
        mode: { kind: "window", size: WINDOW },
        timestamped: false,
        endMarker: false,
        timeoutMs: TIMEOUT_MS
      }, { timeoutMs: hardLimit, profileDir })
      try {
        const pub = await worker.result
        const seen = await peer.result
        const ok = seen.publishesReceived >= pub.published
        return {
          metrics: { rate: pub.published / ((pub.doneAt - pub.firstPublishAt) / 1000), cpuMs: pub.cpuMs },
          ok,
          note: ok ? undefined : `the peer read ${seen.publishesReceived} of ${pub.published} publishes`
        }
      } finally {
        await worker.finish(profileDir !== undefined ? 10_000 : 2_000)
      }
    }
    const worker = startWorker<SubscribeResult>(
      { role: "sub", client, url, topic, qos, expected: count, latency: false, timeoutMs: TIMEOUT_MS },
      { timeoutMs: hardLimit, profileDir }
    )
    try {
      const sub = await worker.result
      const sent = await peer.result
      return {
        metrics: { rate: sub.received / ((sub.lastReceivedAt - sent.firstSentAt) / 1000), cpuMs: sub.cpuMs },
        ok: sub.complete,
        note: sub.complete ? undefined : `${sub.received} of ${count} messages arrived (${sent.publishesSent} sent)`
      }
    } finally {
      await worker.finish(profileDir !== undefined ? 10_000 : 2_000)
    }
  } finally {
    await peer.finish(2_000)
  }
}

const variant = (side: Side, qos: QoS, count: number): Variant => ({
  id: `w1-peer-${side}-qos${qos}`,
  workload: 1,
  title: `client-bound ${side === "pub" ? "publisher" : "subscriber"} (no broker: a minimal peer), QoS ${qos}, window ${
    WINDOW.toLocaleString("en-US")
  }, ${count.toLocaleString("en-US")} msgs`,
  metrics: [RATE, CPU],
  primary: "rate",
  clients: ["effect", "mqttjs"],
  run: (client, context) => {
    if (client === "c") throw new Error("the C clients do not run the client-bound workload")
    return run(context, client, side, qos, count)
  }
})

/** Ids of the client-bound variants start with this. */
export const CLIENT_BOUND_PREFIX = "w1-peer-"

export const clientBoundVariants = (quick: boolean): Array<Variant> => {
  const counts: ReadonlyArray<readonly [QoS, number]> = quick
    ? [[0, 10_000], [1, 10_000], [2, 5_000]]
    : [[0, 100_000], [1, 100_000], [2, 50_000]]
  return (["pub", "sub"] as const).flatMap((side) => counts.map(([qos, count]) => variant(side, qos, count)))
}
