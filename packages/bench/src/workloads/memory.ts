/**
 * Workload 6: memory under overload. 1,000,000 QoS 0 messages published at
 * 100,000 msg/s (effect-mqtt's queue: "sliding", capacity 1,024) to a
 * subscriber that consumes 10,000 msg/s, ten times slower, behind a
 * subscription buffer of 1,024 with "sliding". What cannot be consumed must be
 * dropped and counted, and memory must stay flat:
 *
 *   published = dropped by the publisher + dropped by the subscriber + received
 *
 * effect-mqtt: `subscribeScoped(topic, { qos: 0, bufferSize: 1024, strategy:
 * "sliding" })`, drops read from `stats.droppedIncoming`. MQTT.js has no
 * bounded inbound buffer: its side is the ring buffer an application would
 * write in the "message" handler (see runners/mqttjs.ts).
 */
import type { PublishResult, SubscribeResult } from "../protocol.ts"
import { type Metric, runPair, type Variant } from "./shared.ts"

const PUBLISH_RATE = 100_000
const CONSUME_RATE = PUBLISH_RATE / 10
const CAPACITY = 1_024

const metrics: ReadonlyArray<Metric> = [
  { key: "peakRssMiB", label: "peak RSS MiB (max of both)", unit: "MiB", better: "lower", digits: 1 },
  { key: "subPeakRssMiB", label: "subscriber RSS MiB", unit: "MiB", better: "lower", digits: 1 },
  { key: "pubPeakRssMiB", label: "publisher RSS MiB", unit: "MiB", better: "lower", digits: 1 },
  { key: "received", label: "received", unit: "msgs", better: "higher", digits: 0 },
  { key: "dropped", label: "dropped (pub + sub)", unit: "msgs", better: "lower", digits: 0 },
  { key: "publisherDropped", label: "of which by the publisher", unit: "msgs", better: "lower", digits: 0 },
  { key: "unaccounted", label: "published - dropped - received", unit: "msgs", better: "lower", digits: 0 }
]

/** published - (dropped + received): 0 when every message is accounted for. */
const unaccounted = (pub: PublishResult, sub: SubscribeResult): number =>
  pub.published - (pub.dropped + (sub.dropped ?? 0) + sub.received)

const variant = (count: number): Variant => ({
  id: "w6-memory",
  workload: 6,
  title: `memory: ${count.toLocaleString("en-US")} QoS 0 at ${PUBLISH_RATE.toLocaleString("en-US")} msg/s, ` +
    `consumer 10x slower, sliding ${CAPACITY.toLocaleString("en-US")}`,
  metrics,
  primary: "peakRssMiB",
  clients: ["effect", "mqttjs"],
  run: async (client, context) => {
    if (client === "c") throw new Error("no C reference for the memory workload")
    const topic = context.topic()
    const timeoutMs = (count / PUBLISH_RATE) * 1000 * 2 + 30_000
    const { pub, sub } = await runPair(
      context,
      client,
      {
        topic,
        qos: 0,
        expected: undefined,
        latency: false,
        slow: { rate: CONSUME_RATE, bufferSize: CAPACITY, strategy: "sliding" },
        timeoutMs
      },
      {
        topic,
        qos: 0,
        count,
        clients: 1,
        payloadSize: 64,
        mode: { kind: "paced", rate: PUBLISH_RATE },
        timestamped: false,
        queue: { capacity: CAPACITY, strategy: "sliding" },
        endMarker: true,
        timeoutMs
      }
    )
    const missing = unaccounted(pub, sub)
    const problems = [
      ...(sub.complete ? [] : ["the end marker did not arrive or the buffer did not drain"]),
      ...(missing !== 0 ? [`${missing} messages unaccounted for (lost by the broker or uncounted)`] : [])
    ]
    return {
      metrics: {
        peakRssMiB: Math.max(pub.peakRssMiB, sub.peakRssMiB),
        subPeakRssMiB: sub.peakRssMiB,
        pubPeakRssMiB: pub.peakRssMiB,
        published: pub.published,
        received: sub.received,
        dropped: pub.dropped + (sub.dropped ?? 0),
        publisherDropped: pub.dropped,
        unaccounted: missing,
        publishSeconds: (pub.doneAt - pub.firstPublishAt) / 1000
      },
      ok: problems.length === 0,
      note: problems.length === 0 ? undefined : problems.join("; ")
    }
  }
})

export const memoryVariants = (quick: boolean): Array<Variant> => [variant(quick ? 100_000 : 1_000_000)]
