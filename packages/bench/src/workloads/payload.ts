/**
 * Workload 4: payload sizes 16 B, 1 KiB and 64 KiB at QoS 1, window 1,000.
 * Fewer messages for 64 KiB, so each variant moves a comparable volume in
 * reasonable time.
 */
import { runC } from "../runners/mosquitto.ts"
import { nodeThroughput, RATE, type Variant } from "./shared.ts"

const variant = (label: string, payloadSize: number, count: number): Variant => ({
  id: `w4-${label}`,
  workload: 4,
  title: `QoS 1, ${label} payloads, window 1,000, ${count.toLocaleString("en-US")} msgs`,
  metrics: [RATE, { key: "mibps", label: "MiB/s", unit: "MiB/s", better: "higher", digits: 1 }],
  primary: "rate",
  clients: ["effect", "mqttjs", "c"],
  run: async (client, context) => {
    const options = { qos: 1, count, payloadSize, mode: { kind: "window", size: 1_000 }, timeoutMs: 90_000 } as const
    const measured = client === "c"
      ? await runC(context, { ...options, latency: false })
      : await nodeThroughput(context, client, options)
    const rate = measured.metrics.rate ?? 0
    return { ...measured, metrics: { ...measured.metrics, mibps: (rate * payloadSize) / (1 << 20) } }
  }
})

export const payloadVariants = (quick: boolean): Array<Variant> =>
  quick
    ? [variant("16B", 16, 5_000), variant("1KiB", 1024, 5_000), variant("64KiB", 65_536, 500)]
    : [variant("16B", 16, 50_000), variant("1KiB", 1024, 50_000), variant("64KiB", 65_536, 5_000)]
