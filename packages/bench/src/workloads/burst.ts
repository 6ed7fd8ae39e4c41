/**
 * Workload 2: 10k and 100k QoS 0 messages published as fast as each client's
 * API takes them, with no window (effect-mqtt: `publish` in a loop with the
 * default queue, capacity 1,024, "suspend"; MQTT.js: `publish` in a loop with
 * a completion callback each). The rate at 100k should stay close to the rate
 * at 10k: no collapse as the burst grows.
 */
import { runC } from "../runners/mosquitto.ts"
import { nodeThroughput, RATE, type Variant } from "./shared.ts"

const variant = (id: string, count: number, timeoutMs: number): Variant => ({
  id,
  workload: 2,
  title: `QoS 0 burst, no window, ${count.toLocaleString("en-US")} msgs`,
  metrics: [RATE],
  primary: "rate",
  clients: ["effect", "mqttjs", "c"],
  run: (client, context) => {
    const options = { qos: 0, count, payloadSize: 64, mode: { kind: "burst" }, timeoutMs } as const
    return client === "c" ? runC(context, { ...options, latency: false }) : nodeThroughput(context, client, options)
  }
})

/** The ids the targets refer to: the small and the large burst. */
export const BURST_SMALL = "w2-burst-small"
export const BURST_LARGE = "w2-burst-large"

export const burstVariants = (quick: boolean): Array<Variant> =>
  quick
    ? [variant(BURST_SMALL, 2_000, 20_000), variant(BURST_LARGE, 10_000, 30_000)]
    : [variant(BURST_SMALL, 10_000, 60_000), variant(BURST_LARGE, 100_000, 180_000)]
