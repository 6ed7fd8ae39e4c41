/**
 * Entry point of a worker process: `node worker.js '<spec as JSON>'`.
 *
 * One process plays one role (publisher, subscriber or codec benchmark) for
 * one client in one run, so no run inherits another's JIT state, heap or
 * sockets, and peak RSS is that run's alone. Only the client under test is
 * loaded (dynamic import), so MQTT.js never weighs on effect-mqtt's RSS and
 * the other way round.
 */
import * as V8 from "node:v8"
import type { Effect } from "effect"
import { send } from "./measure.ts"
import type { CodecResult, PublishResult, SubscribeResult, WorkerSpec } from "./protocol.ts"

const run = async (spec: WorkerSpec): Promise<PublishResult | SubscribeResult | CodecResult> => {
  switch (spec.role) {
    case "codec": {
      const { codec } = await import("./runners/codec.ts")
      return codec(spec)
    }
    case "pub":
    case "sub": {
      if (spec.client === "effect") {
        const { runPromise } = await import("effect/Effect")
        const runner = await import("./runners/effect.ts")
        const program: Effect.Effect<PublishResult | SubscribeResult, unknown> = spec.role === "pub"
          ? runner.publisher(spec)
          : runner.subscriber(spec)
        return runPromise(program)
      }
      const runner = await import("./runners/mqttjs.ts")
      return spec.role === "pub" ? runner.publisher(spec) : runner.subscriber(spec)
    }
  }
}

/** `BENCH_TRACE_MEMORY=ms`: print this process' memory use to stderr every `ms`, for finding where memory goes. */
const traceMemory = (everyMs: number) => {
  const mib = (bytes: number) => (bytes / (1 << 20)).toFixed(1)
  setInterval(() => {
    const m = process.memoryUsage()
    const spaces = V8.getHeapSpaceStatistics().map((s) => `${s.space_name} ${mib(s.space_size)}`).join(", ")
    process.stderr.write(
      `memory rss ${mib(m.rss)} heapUsed ${mib(m.heapUsed)} heapTotal ${mib(m.heapTotal)} external ${mib(m.external)} ` +
        `arrayBuffers ${mib(m.arrayBuffers)} MiB; spaces: ${spaces}\n`
    )
  }, everyMs).unref()
}

const main = async () => {
  if (process.env.BENCH_TRACE_MEMORY) traceMemory(Number(process.env.BENCH_TRACE_MEMORY))
  const raw = process.argv[2]
  if (raw === undefined) throw new Error("usage: worker.js '<spec as JSON>'")
  const result = await run(JSON.parse(raw) as WorkerSpec)
  send({ type: "result", result })
}

main().then(
  // Exit at once: lingering timers or sockets of a client must not keep the run alive.
  () => process.stdout.write("", () => process.exit(0)),
  (error: unknown) => {
    send({ type: "error", message: error instanceof Error ? (error.stack ?? error.message) : String(error) })
    process.stdout.write("", () => process.exit(1))
  }
)
