/**
 * Workload 5: fan-in. 100 clients in one process each publish 1,000 QoS 1
 * messages (window 1,000 each) to one subscriber in another process; msg/s
 * from the first publish of any client to the last message received.
 * mosquitto_pub would need 100 processes for this: no C reference.
 */
import { nodeThroughput, RATE, type Variant } from "./shared.ts"

const variant = (clients: number, count: number): Variant => ({
  id: "w5-fan-in",
  workload: 5,
  title: `fan-in: ${clients} clients x ${count.toLocaleString("en-US")} QoS 1 msgs`,
  metrics: [RATE],
  primary: "rate",
  clients: ["effect", "mqttjs"],
  run: (client, context) =>
    client === "c"
      ? Promise.reject(new Error("no C reference for fan-in"))
      : nodeThroughput(context, client, {
        qos: 1,
        count,
        clients,
        payloadSize: 64,
        mode: { kind: "window", size: 1_000 },
        timeoutMs: 90_000
      })
})

export const fanInVariants = (quick: boolean): Array<Variant> => [quick ? variant(100, 100) : variant(100, 1_000)]
