/**
 * Workload 1: QoS 0, 1 and 2 with at most 1,000 messages unacknowledged,
 * 100k messages (50k at QoS 2), 64-byte payloads; msg/s from the first
 * publish to the last message received by a subscriber in another process.
 */
import { runC } from "../runners/mosquitto.ts"
import type { QoS } from "../protocol.ts"
import { BROKER_BUSY, nodeThroughput, RATE, type Variant } from "./shared.ts"

const WINDOW = 1_000

const variant = (qos: QoS, count: number): Variant => ({
  id: `w1-qos${qos}`,
  workload: 1,
  title: `QoS ${qos}, window ${WINDOW.toLocaleString("en-US")}, ${count.toLocaleString("en-US")} msgs`,
  metrics: [RATE, BROKER_BUSY],
  primary: "rate",
  clients: ["effect", "mqttjs", "c"],
  run: (client, context) => {
    const options = { qos, count, payloadSize: 64, mode: { kind: "window", size: WINDOW }, timeoutMs: 60_000 } as const
    return client === "c" ? runC(context, { ...options, latency: false }) : nodeThroughput(context, client, options)
  }
})

export const windowVariants = (quick: boolean): Array<Variant> =>
  quick
    ? [variant(0, 10_000), variant(1, 10_000), variant(2, 5_000)]
    : [variant(0, 100_000), variant(1, 100_000), variant(2, 50_000)]
