/**
 * Workload 3: latency. 5,000 QoS 1 messages per second for 10 s; each payload
 * carries its send time (taken just before the publish call), the subscriber
 * in another process subtracts it from the time the message reached the
 * application. p50/p99/max in ms.
 */
import { runC } from "../runners/mosquitto.ts"
import type { LatencySummary } from "../protocol.ts"
import { type Metric, runPair, type Variant } from "./shared.ts"

const RATE = 5_000

const metrics: ReadonlyArray<Metric> = [
  { key: "p50", label: "p50 ms", unit: "ms", better: "lower", digits: 2 },
  { key: "p99", label: "p99 ms", unit: "ms", better: "lower", digits: 2 },
  { key: "max", label: "max ms", unit: "ms", better: "lower", digits: 2 }
]

const variant = (seconds: number): Variant => {
  const count = RATE * seconds
  return {
    id: "w3-latency",
    workload: 3,
    title: `latency: QoS 1 at ${RATE.toLocaleString("en-US")} msg/s for ${seconds} s`,
    metrics,
    primary: "p99",
    clients: ["effect", "mqttjs", "c"],
    run: async (client, context) => {
      const timeoutMs = seconds * 1000 + 30_000
      if (client === "c") {
        return runC(context, { qos: 1, count, payloadSize: 64, mode: { kind: "paced", rate: RATE }, latency: true, timeoutMs })
      }
      const topic = context.topic()
      const { sub } = await runPair(
        context,
        client,
        { topic, qos: 1, expected: count, latency: true, timeoutMs },
        {
          topic,
          qos: 1,
          count,
          clients: 1,
          payloadSize: 64,
          mode: { kind: "paced", rate: RATE },
          timestamped: true,
          endMarker: false,
          timeoutMs
        }
      )
      const latency: LatencySummary = sub.latency ?? { p50: Number.NaN, p99: Number.NaN, max: Number.NaN }
      return {
        metrics: { ...latency, subCpuMs: sub.cpuMs },
        ok: sub.complete,
        note: sub.complete ? undefined : `${sub.received} of ${count} messages arrived`
      }
    }
  }
}

export const latencyVariants = (quick: boolean): Array<Variant> => [variant(quick ? 1 : 10)]
