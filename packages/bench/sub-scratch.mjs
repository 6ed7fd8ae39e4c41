// Scratch (not committed): W6-like subscriber variants, for GC measurements.
import { Effect, Stream, Duration } from "effect"
import { NodeMqttClient } from "@effect-mqtt/node"
const [strategy, consume] = process.argv.slice(2)
const count = { n: 0 }
const now = () => performance.now()
Effect.runFork(Effect.scoped(Effect.gen(function*() {
  const client = yield* NodeMqttClient.make({ url: "mqtt://127.0.0.1:18831", clientId: "scratch-client" })
  const messages = yield* client.subscribeScoped("w6", { qos: 0, bufferSize: 1024, strategy })
  if (consume === "fast") yield* Stream.runForEachArray(messages, (c) => Effect.sync(() => { count.n += c.length }))
  else if (consume === "slow") {
    let first = 0
    const allowance = () => Math.floor(((now() - first) * 10000) / 1000) + 1
    yield* Stream.runForEachArray(messages, (chunk) => Effect.gen(function*() {
      if (count.n === 0) first = now()
      for (let i = 0; i < chunk.length; i++) {
        while (count.n >= allowance()) yield* Effect.sleep(Duration.millis(1))
        count.n++
      }
    }))
  } else if (consume === "slowchunk") {
    yield* Stream.runForEachArray(messages, (chunk) => Effect.sleep(Duration.millis(chunk.length / 10)).pipe(Effect.andThen(Effect.sync(() => { count.n += chunk.length }))))
  } else if (consume === "slowsync") {
    // the same pacing without Effect.sleep: a plain timer promise per wait
    let first = 0
    const allowance = () => Math.floor(((now() - first) * 10000) / 1000) + 1
    yield* Stream.runForEachArray(messages, (chunk) => Effect.promise(async () => {
      if (count.n === 0) first = now()
      for (let i = 0; i < chunk.length; i++) {
        while (count.n >= allowance()) await new Promise((r) => setTimeout(r, 1))
        count.n++
      }
    }))
  } else yield* Effect.never
})))
setTimeout(() => { console.log("received", count.n, "rss", (process.resourceUsage().maxRSS / 1024).toFixed(0)); process.exit(0) }, 12000)
