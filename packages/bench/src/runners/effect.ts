/**
 * effect-mqtt's side of every workload, written the way an application would
 * use the public API: `NodeMqttClient.make` in a scope, `publish` returning a
 * receipt, `subscribeScoped` returning a `Stream`.
 */
import type { MqttClient } from "@effect-mqtt/core"
import { NodeMqttClient } from "@effect-mqtt/node"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import { latencySummary, makePayload, now, readStamp, send, stampPayload, usage } from "../measure.ts"
import type { PublishResult, PublishSpec, SubscribeResult, SubscribeSpec } from "../protocol.ts"

type Client = MqttClient.Service

/**
 * Our inflight window (`maxInflight`) when the workload itself sets none: as
 * large as the workloads' 1,000-message window, so the client's own window is
 * never what limits it.
 */
const DEFAULT_INFLIGHT = 1_000

const ONE_MILLI = Duration.millis(1)

const traceStats = (client: Client, everyMs: number) => {
  const start = now()
  let last = start
  setInterval(() => {
    const lag = now() - last - everyMs
    last = now()
    Effect.runPromise(client.stats).then((s) =>
      process.stderr.write(
        `stats t=${(now() - start).toFixed(0)} ms lag=${lag.toFixed(1)} ms queue=${s.queueSize} dropped=${s.dropped} sent=${s.sent}\n`
      )
    )
  }, everyMs).unref()
}

const awaitConnected = (client: Client) =>
  client.stats.pipe(Effect.repeat({ until: (stats) => stats.connected, schedule: Schedule.spaced("5 millis") }))

const connect = (spec: PublishSpec | SubscribeSpec, name: string) =>
  NodeMqttClient.make({
    url: spec.url,
    clientId: `bench-effect-${name}-${process.pid}`,
    maxInflight: spec.role === "pub" && spec.mode.kind === "window" ? spec.mode.size : DEFAULT_INFLIGHT,
    ...(spec.role === "pub" && spec.queue !== undefined
      ? { capacity: spec.queue.capacity, strategy: spec.queue.strategy }
      : {})
  }).pipe(Effect.tap(awaitConnected))

// -----------------------------------------------------------------------------
// Publisher
// -----------------------------------------------------------------------------

/**
 * At most `size` receipts pending. Receipts complete in order (the broker
 * acknowledges in order), so waiting for the oldest one is enough to keep the
 * bound, without a fiber per message.
 */
const publishWindowed = (client: Client, spec: PublishSpec, size: number, payload: () => Uint8Array) =>
  Effect.gen(function*() {
    // Receipts, not their `acknowledged` effects: reading `acknowledged` only when waiting on it lets a receipt
    // that is already settled skip the Deferred entirely.
    const pending: Array<MqttClient.PublishReceipt> = new Array(size)
    let head = 0
    let count = 0
    for (let i = 0; i < spec.count; i++) {
      if (count === size) {
        yield* pending[head].acknowledged
        head = (head + 1) % size
        count--
      }
      const receipt = yield* client.publish({ topic: spec.topic, payload: payload(), qos: spec.qos })
      pending[(head + count) % size] = receipt
      count++
    }
    for (; count > 0; count--) {
      yield* pending[head].acknowledged
      head = (head + 1) % size
    }
  })

/** Every publish at once; then waits for the last receipt (receipts complete in order). */
const publishBurst = (client: Client, spec: PublishSpec, payload: () => Uint8Array) =>
  Effect.gen(function*() {
    let last: MqttClient.PublishReceipt | undefined
    for (let i = 0; i < spec.count; i++) {
      last = yield* client.publish({ topic: spec.topic, payload: payload(), qos: spec.qos })
    }
    // With "sliding" an earlier receipt may have failed (dropped); the last one cannot be.
    if (last !== undefined) yield* last.acknowledged
  })

/** `rate` messages per second: each 1 ms tick publishes what is due since the start. */
const publishPaced = (client: Client, spec: PublishSpec, rate: number, payload: () => Uint8Array) =>
  Effect.gen(function*() {
    const start = now()
    let sent = 0
    let last: MqttClient.PublishReceipt | undefined
    while (sent < spec.count) {
      const due = Math.min(spec.count, Math.floor(((now() - start) * rate) / 1000) + 1)
      for (; sent < due; sent++) {
        last = yield* client.publish({ topic: spec.topic, payload: payload(), qos: spec.qos })
      }
      if (sent < spec.count) yield* Effect.sleep(ONE_MILLI)
    }
    if (last !== undefined) yield* last.acknowledged
  })

const publishAll = (client: Client, spec: PublishSpec) => {
  const fixed = makePayload(spec.payloadSize)
  const payload = spec.timestamped ? () => stampPayload(spec.payloadSize) : () => fixed
  switch (spec.mode.kind) {
    case "window":
      return publishWindowed(client, spec, spec.mode.size, payload)
    case "burst":
      return publishBurst(client, spec, payload)
    case "paced":
      return publishPaced(client, spec, spec.mode.rate, payload)
  }
}

export const publisher = (spec: PublishSpec): Effect.Effect<PublishResult, unknown> =>
  Effect.scoped(Effect.gen(function*() {
    const clients = yield* Effect.forEach(
      Array.from({ length: spec.clients }, (_, i) => i),
      (i) => connect(spec, `pub${i}`),
      { concurrency: "unbounded" }
    )
    send({ type: "ready" })
    // BENCH_TRACE_STATS=ms: the first client's queue, drops and sent count over time, with the event loop's lag
    // (shown with BENCH_TRACE_MEMORY set), for telling a stalled socket from a busy process.
    if (process.env.BENCH_TRACE_STATS) traceStats(clients[0], Number(process.env.BENCH_TRACE_STATS))
    const firstPublishAt = now()
    yield* Effect.forEach(clients, (client) => publishAll(client, spec), { concurrency: "unbounded", discard: true })
    const doneAt = now()
    let dropped = 0
    let sent = 0
    let connections = 0
    for (const client of clients) {
      const stats = yield* client.stats
      dropped += stats.dropped
      sent += stats.sent
      connections += stats.connections
    }
    const published = spec.count * spec.clients
    if (spec.endMarker) {
      yield* clients[0].publishAndWait({
        topic: `${spec.topic}/end`,
        payload: JSON.stringify({ published, dropped }),
        qos: 1
      })
    }
    return { role: "pub", firstPublishAt, doneAt, published, dropped, sent, connections, ...usage() } satisfies PublishResult
  }))

// -----------------------------------------------------------------------------
// Subscriber
// -----------------------------------------------------------------------------

/**
 * The subscription buffer of the counting subscribers at QoS 0. With the
 * default (1,024, "suspend"), QoS 0 beyond twice the buffer is dropped
 * whenever the consumer fiber misses its turn for ~2,000 messages: the reader
 * fiber routes a whole socket read (about 900 messages of 64 bytes per
 * 64 KiB) at a time. On a loaded machine that cost 280 and 2,880 of 100,000
 * messages in two runs. These workloads measure delivery, so the buffer is
 * large enough that nothing is dropped; QoS 1/2 keep the default (a full
 * buffer holds the acknowledgement back, nothing is lost).
 */
const QOS0_BUFFER = 65_536

/** Counts (and times) every message until `expected` arrived, reading the stream a chunk at a time. */
const subscribeCounting = (client: Client, spec: SubscribeSpec & { readonly expected: number }) =>
  Effect.gen(function*() {
    const messages = yield* client.subscribeScoped(spec.topic, spec.qos === 0 ? { qos: 0, bufferSize: QOS0_BUFFER } : { qos: spec.qos })
    const latencies = spec.latency ? new Float64Array(spec.expected) : undefined
    // Why a connection ended, if one did (a reconnect loses the QoS 0 messages sent meanwhile).
    const disconnects: Array<string> = []
    yield* Stream.runForEach(client.events, (event) =>
      Effect.sync(() => {
        if (event._tag === "Disconnected") disconnects.push(`${event.cause._tag}: ${event.cause.message}`)
      })).pipe(Effect.forkScoped)
    const done = Deferred.makeUnsafe<void>()
    let received = 0
    let firstReceivedAt = 0
    let lastReceivedAt = 0
    yield* Stream.runForEachArray(messages, (chunk) =>
      Effect.sync(() => {
        const at = now()
        if (received === 0) firstReceivedAt = at
        for (let i = 0; i < chunk.length; i++) {
          if (latencies !== undefined && received < latencies.length) latencies[received] = at - readStamp(chunk[i].payload)
          received++
        }
        lastReceivedAt = at
        if (received >= spec.expected) Deferred.doneUnsafe(done, Effect.void)
      })).pipe(Effect.forkScoped)
    // Dropped messages never arrive: stop as soon as every message arrived or was dropped.
    yield* client.stats.pipe(
      Effect.repeat({
        until: (stats) => received + stats.droppedIncoming >= spec.expected,
        schedule: Schedule.spaced("100 millis")
      }),
      Effect.andThen(Effect.sync(() => Deferred.doneUnsafe(done, Effect.void))),
      Effect.forkScoped
    )
    send({ type: "ready" })
    yield* Deferred.await(done).pipe(Effect.timeoutOption(spec.timeoutMs))
    const { droppedIncoming, received: decoded } = yield* client.stats
    return {
      role: "sub",
      complete: received >= spec.expected,
      dropped: droppedIncoming,
      decoded,
      disconnects,
      received,
      firstReceivedAt,
      lastReceivedAt,
      ...(latencies !== undefined ? { latency: latencySummary(latencies, Math.min(received, latencies.length)) } : {}),
      ...usage()
    } satisfies SubscribeResult
  })

/**
 * A consumer at most `slow.rate` messages per second behind a bounded
 * subscription buffer (`bufferSize`, `strategy`): what overflows is dropped and
 * counted by the client (`stats.droppedIncoming`). Ends once the publisher's
 * end marker arrived and the buffer has drained.
 */
const subscribeSlow = (client: Client, spec: SubscribeSpec & { readonly slow: NonNullable<SubscribeSpec["slow"]> }) =>
  Effect.gen(function*() {
    const { rate, bufferSize, strategy } = spec.slow
    const messages = yield* client.subscribeScoped(spec.topic, { qos: spec.qos, bufferSize, strategy })
    const endMarker = yield* client.subscribeScoped(`${spec.topic}/end`, { qos: 1 })
    let end: SubscribeResult["end"]
    yield* Stream.runForEach(Stream.take(endMarker, 1), (message) =>
      Effect.sync(() => {
        end = JSON.parse(new TextDecoder().decode(message.payload))
      })).pipe(Effect.forkScoped)

    let received = 0
    let firstReceivedAt = 0
    let lastReceivedAt = 0
    /**
     * The consumer's pace: at most `rate` messages per second since the first one. A chunk is done once that
     * allows all of it, with one sleep per chunk. (Pacing each message with `Effect.sleep(1 ms)` in a loop, as
     * this runner first did, costs ~75 MiB more peak RSS: V8 grows the young generation under that many fiber
     * suspensions. The client is the same either way; see RESULTS.md.)
     */
    yield* Stream.runForEachArray(messages, (chunk) =>
      Effect.suspend(() => {
        if (received === 0) firstReceivedAt = now()
        const doneAt = firstReceivedAt + ((received + chunk.length - 1) * 1000) / rate
        const wait = doneAt - now()
        return Effect.andThen(
          wait > 0 ? Effect.sleep(Duration.millis(wait)) : Effect.void,
          Effect.sync(() => {
            received += chunk.length
            lastReceivedAt = now()
          })
        )
      })).pipe(Effect.forkScoped)
    send({ type: "ready" })

    const deadline = now() + spec.timeoutMs
    /** The end marker came and nothing was consumed for a while: the buffer is empty. */
    const drained = () => end !== undefined && now() - lastReceivedAt > 300
    while (!drained() && now() < deadline) yield* Effect.sleep("50 millis")
    const { droppedIncoming } = yield* client.stats
    return {
      role: "sub",
      received,
      firstReceivedAt,
      lastReceivedAt,
      complete: drained(),
      dropped: droppedIncoming,
      end,
      ...usage()
    } satisfies SubscribeResult
  })

export const subscriber = (spec: SubscribeSpec): Effect.Effect<SubscribeResult, unknown> =>
  Effect.scoped(Effect.gen(function*() {
    const client = yield* connect(spec, "sub")
    if (spec.slow !== undefined) return yield* subscribeSlow(client, { ...spec, slow: spec.slow })
    if (spec.expected === undefined) return yield* Effect.die("a counting subscriber needs `expected`")
    return yield* subscribeCounting(client, { ...spec, expected: spec.expected })
  }))
