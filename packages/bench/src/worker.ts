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
import type * as Effect from "effect/Effect"
import { send } from "./measure.ts"
import type { CodecResult, PeerResult, PublishResult, SubscribeResult, WorkerSpec } from "./protocol.ts"

const run = async (spec: WorkerSpec): Promise<PublishResult | SubscribeResult | CodecResult | PeerResult> => {
  switch (spec.role) {
    case "peer": {
      const { peer } = await import("./runners/peer.ts")
      return peer(spec)
    }
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

interface SamplingNode {
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number }
  readonly selfSize: number
  readonly children: ReadonlyArray<SamplingNode>
}

/**
 * `BENCH_ALLOC_PROFILE=1`: sample every allocation (also those already
 * collected) and print the sites that allocated most to stderr, for finding
 * what makes the young generation grow. `BENCH_ALLOC_PROFILE=promoted`: only
 * what survived minor GCs.
 */
const profileAllocations = async () => {
  const Inspector = await import("node:inspector/promises")
  const session = new Inspector.Session()
  session.connect()
  await session.post("HeapProfiler.startSampling", {
    samplingInterval: 1024,
    includeObjectsCollectedByMajorGC: true,
    // "promoted": only what survived the young generation (what makes the old one grow)
    includeObjectsCollectedByMinorGC: process.env.BENCH_ALLOC_PROFILE !== "promoted"
  })
  return async () => {
    const { profile } = await session.post("HeapProfiler.stopSampling") as { profile: { head: SamplingNode } }
    const sites = new Map<string, number>()
    let total = 0
    const visit = (node: SamplingNode) => {
      const { functionName, url, lineNumber } = node.callFrame
      const key = `${functionName || "(anonymous)"} ${url.replace(/^.*node_modules\//, "").replace(/^.*packages\//, "")}:${lineNumber + 1}`
      sites.set(key, (sites.get(key) ?? 0) + node.selfSize)
      total += node.selfSize
      for (const child of node.children) visit(child)
    }
    visit(profile.head)
    const top = [...sites].sort((a, b) => b[1] - a[1]).slice(0, 30)
    process.stderr.write(`allocations sampled: ${(total / (1 << 20)).toFixed(1)} MiB\n`)
    for (const [site, bytes] of top) process.stderr.write(`alloc ${(bytes / (1 << 20)).toFixed(1).padStart(8)} MiB ${site}\n`)
  }
}

const main = async () => {
  // BENCH_HEAP_SNAPSHOT_MS: write a heap snapshot (to the working directory) that many ms after start.
  if (process.env.BENCH_HEAP_SNAPSHOT_MS) {
    setTimeout(() => process.stderr.write(`heap snapshot: ${V8.writeHeapSnapshot()}\n`), Number(process.env.BENCH_HEAP_SNAPSHOT_MS)).unref()
  }
  if (process.env.BENCH_TRACE_MEMORY) traceMemory(Number(process.env.BENCH_TRACE_MEMORY))
  const stopProfiling = process.env.BENCH_ALLOC_PROFILE ? await profileAllocations() : undefined
  const raw = process.argv[2]
  if (raw === undefined) throw new Error("usage: worker.js '<spec as JSON>'")
  const result = await run(JSON.parse(raw) as WorkerSpec)
  if (stopProfiling !== undefined) await stopProfiling()
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
