/**
 * `npm run demo`: a tour of effect-mqtt against a real broker.
 *
 * With no broker given it starts an embedded aedes broker on a free port;
 * `--url mqtt://host:port` or `MQTT_URL` points it at another one. Faults are
 * made by a TCP proxy between the clients and the broker, so the demo works
 * the same against any broker.
 */
import * as Net from "node:net"
import { NodeRuntime } from "@effect/platform-node"
import { type MqttClient, MqttMessage, type MqttOptions } from "@effect-mqtt/core"
import { FaultProxy, NodeMqttClient } from "@effect-mqtt/node"
import { Aedes } from "aedes"
import { Console, Effect, Exit, Fiber, Schedule, Stream } from "effect"
import type * as Scope from "effect/Scope"

interface Target {
  readonly host: string
  readonly port: number
  readonly description: string
}

const argUrl = (): string | undefined => {
  const args = process.argv.slice(2)
  const i = args.findIndex((arg) => arg === "--url" || arg.startsWith("--url="))
  if (i < 0) return process.env.MQTT_URL || undefined
  return args[i].includes("=") ? args[i].slice("--url=".length) : args[i + 1]
}

const embeddedAedes: Effect.Effect<Target, never, Scope.Scope> = Effect.gen(function*() {
  const broker = yield* Effect.promise(() => Aedes.createBroker())
  const server = Net.createServer(broker.handle)
  const port = yield* Effect.acquireRelease(
    Effect.callback<number>((resume) => {
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed((server.address() as Net.AddressInfo).port)))
    }),
    () =>
      Effect.callback<void>((resume) => {
        server.close()
        broker.close(() => resume(Effect.void))
      })
  )
  return { host: "127.0.0.1", port, description: `embedded aedes broker on 127.0.0.1:${port}` }
})

const brokerTarget: Effect.Effect<Target, never, Scope.Scope> = Effect.suspend(() => {
  const url = argUrl()
  if (url === undefined) return embeddedAedes
  const parsed = new URL(url)
  return Effect.succeed({
    host: parsed.hostname,
    port: parsed.port === "" ? 1883 : Number(parsed.port),
    description: `broker at ${url}`
  })
})

const say = (text: string) => Console.log(text)
const section = (title: string, why: string) => say(`\n== ${title}\n   ${why}`)

const awaitConnected = (client: MqttClient.Service) =>
  client.stats.pipe(Effect.repeat({ until: (stats) => stats.connected, schedule: Schedule.spaced("10 millis") }))

const connect = (url: string, options: MqttOptions.MqttClientOptions = {}) =>
  Effect.tap(NodeMqttClient.make({ url, ...options }), awaitConnected)

interface Row {
  readonly scenario: string
  readonly published: number
  readonly suspended: number
  readonly dropped: number
  readonly acknowledged: number
  readonly received: number
}

/** Part 1: one subscription, one message at each QoS. */
const qosTour = (url: string) =>
  Effect.gen(function*() {
    yield* section("Subscribing and publishing at QoS 0, 1 and 2", "every publish returns a receipt; `acknowledged` completes on write (0), PUBACK (1) or PUBCOMP (2)")
    const subscriber = yield* connect(url)
    const publisher = yield* connect(url)
    const messages = yield* subscriber.subscribeScoped("demo/qos/+", { qos: 2 })
    for (const qos of [0, 1, 2] as const) {
      const receipt = yield* publisher.publish({ topic: `demo/qos/${qos}`, payload: `hello at QoS ${qos}`, qos })
      yield* receipt.acknowledged
      yield* say(`   published demo/qos/${qos}: acknowledged`)
    }
    const received = yield* messages.pipe(Stream.take(3), Stream.runCollect)
    for (const message of received) {
      yield* say(`   received  ${message.topic} (QoS ${message.qos}): "${MqttMessage.text(message)}"`)
    }
    return { scenario: "QoS 0/1/2 round trip", published: 3, suspended: 0, dropped: 0, acknowledged: 3, received: received.length } satisfies Row
  }).pipe(Effect.scoped)

const BURST = 40
const CAPACITY = 8
const WINDOW = 4

/** Part 2: a burst into a small queue while the network is stalled, under each strategy. */
const burst = (target: Target, directUrl: string, strategy: MqttOptions.Strategy) =>
  Effect.gen(function*() {
    const proxy = yield* FaultProxy.start(target)
    const publisher = yield* connect(proxy.url, { capacity: CAPACITY, maxInflight: WINDOW, strategy })
    const subscriber = yield* connect(directUrl)
    const topic = `demo/burst/${strategy}`
    const messages = yield* subscriber.subscribeScoped(topic, { qos: 1 })
    yield* proxy.pause
    let suspended = 0
    const receipts: Array<MqttClient.PublishReceipt> = []
    const publishAll = Effect.gen(function*() {
      for (let i = 0; i < BURST; i++) {
        const stats = yield* publisher.stats
        if (stats.queueSize >= stats.capacity && strategy === "suspend") suspended++
        receipts.push(yield* publisher.publish({ topic, payload: `#${i}`, qos: 1 }))
      }
    })
    const fiber = yield* Effect.forkChild(publishAll)
    yield* Effect.sleep("300 millis")
    const doneWhilePaused = fiber.pollUnsafe() !== undefined
    yield* proxy.resume
    yield* Fiber.join(fiber)
    let acknowledged = 0
    let dropped = 0
    for (const receipt of receipts) {
      const exit = yield* Effect.exit(receipt.acknowledged)
      if (Exit.isSuccess(exit)) acknowledged++
      else dropped++
    }
    const received = yield* messages.pipe(Stream.take(acknowledged), Stream.runCollect, Effect.timeout("5 seconds"))
    const ids = received.map((message) => MqttMessage.text(message))
    const stats = yield* publisher.stats
    yield* say(
      `   ${strategy.padEnd(8)} ${
        doneWhilePaused ? "the burst returned at once" : "the publisher suspended until the network came back"
      }; ${stats.dropped} dropped and counted; got through: ${ids.join(" ")}`
    )
    return { scenario: `burst, strategy "${strategy}"`, published: BURST, suspended, dropped: stats.dropped, acknowledged, received: received.length } satisfies Row
  }).pipe(Effect.scoped)

/** Part 3: tryPublish never waits; a full queue is a typed QueueFull. */
const tryPublishFull = (target: Target) =>
  Effect.gen(function*() {
    yield* section("tryPublish on a full queue", "tryPublish never suspends: with \"suspend\" or \"dropping\", a full queue fails at once with a typed QueueFull")
    const proxy = yield* FaultProxy.start(target)
    const client = yield* connect(proxy.url, { capacity: 4, maxInflight: 1 })
    yield* proxy.pause
    let accepted = 0
    let refused = 0
    for (let i = 0; i < 8; i++) {
      const result = yield* Effect.exit(client.tryPublish({ topic: "demo/try", payload: `#${i}`, qos: 1 }))
      if (Exit.isSuccess(result)) accepted++
      else {
        refused++
        if (refused === 1) yield* say(`   tryPublish #${i}: failed at once with ${result.cause.reasons[0]._tag === "Fail" ? (result.cause.reasons[0].error as Error).message : "?"}`)
      }
      yield* Effect.yieldNow
    }
    yield* say(`   ${accepted} accepted (1 in flight + 4 queued), ${refused} refused with QueueFull, nothing waited`)
    yield* proxy.resume
    return { scenario: "tryPublish, queue full", published: 8, suspended: 0, dropped: refused, acknowledged: accepted, received: 0 } satisfies Row
  }).pipe(Effect.scoped)

const TOTAL = 200
const CUT_AT = 60

/** Part 4: the broker goes away mid-stream and comes back; no QoS 1 message is lost. */
const outage = (target: Target) =>
  Effect.gen(function*() {
    yield* section(
      "The broker goes away and comes back",
      `${TOTAL} QoS 1 messages; after #${CUT_AT} every connection is cut and refused for 2 s. The event loop reconnects with back-off, resends what was unacknowledged, and the publisher keeps queueing meanwhile`
    )
    const proxy = yield* FaultProxy.start(target)
    const subscriber = yield* connect(proxy.url, { clientId: `demo-sub-${process.pid}`, cleanSession: false })
    const publisher = yield* connect(proxy.url)
    yield* publisher.events.pipe(
      Stream.runForEach((event) => {
        switch (event._tag) {
          case "Disconnected":
            return say(`   [publisher] disconnected: ${event.cause.message}`)
          case "Reconnecting":
            return say(`   [publisher] reconnecting, attempt ${event.attempt} in ${Math.round(event.delayMillis)} ms`)
          case "Connected":
            return say(`   [publisher] connected again (connection #${event.connection})`)
          default:
            return Effect.void
        }
      }),
      Effect.forkScoped
    )
    const messages = yield* subscriber.subscribeScoped("demo/outage", { qos: 1 })
    const seen = new Map<string, number>()
    const collector = yield* messages.pipe(
      Stream.map((message) => MqttMessage.text(message)),
      Stream.tap((id) => Effect.sync(() => seen.set(id, (seen.get(id) ?? 0) + 1))),
      Stream.takeUntil(() => seen.size === TOTAL),
      Stream.runDrain,
      Effect.forkScoped
    )
    const receipts: Array<MqttClient.PublishReceipt> = []
    for (let i = 1; i <= TOTAL; i++) {
      receipts.push(yield* publisher.publish({ topic: "demo/outage", payload: `${i}`, qos: 1 }))
      if (i === CUT_AT) {
        yield* proxy.cut({ refuseFor: "2 seconds" })
        yield* say(`   -- network cut after #${CUT_AT}, back in 2 s --`)
      }
      if (i % 20 === 0) yield* Effect.sleep("20 millis")
    }
    let acknowledged = 0
    for (const receipt of receipts) {
      yield* receipt.acknowledged
      acknowledged++
    }
    yield* Fiber.join(collector).pipe(Effect.timeout("15 seconds"))
    const duplicates = [...seen.values()].reduce((sum, n) => sum + n - 1, 0)
    const missing = TOTAL - seen.size
    yield* say(`   all ${acknowledged} receipts acknowledged; subscriber got ${seen.size} distinct messages, ${missing} missing, ${duplicates} duplicates (QoS 1 allows them)`)
    return { scenario: "outage, QoS 1", published: TOTAL, suspended: 0, dropped: 0, acknowledged, received: seen.size } satisfies Row
  }).pipe(Effect.scoped)

const printTable = (rows: ReadonlyArray<Row>) =>
  Effect.gen(function*() {
    const header = ["scenario", "published", "suspended", "dropped/refused", "acknowledged", "received"]
    const cells = rows.map((row) => [row.scenario, row.published, row.suspended, row.dropped, row.acknowledged, row.received].map(String))
    const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)))
    const line = (values: ReadonlyArray<string>) =>
      values.map((v, i) => (i === 0 ? v.padEnd(widths[i]) : v.padStart(widths[i]))).join(" | ")
    yield* say(`\n== Summary\n${line(header)}\n${widths.map((w) => "-".repeat(w)).join("-|-")}`)
    for (const row of cells) yield* say(line(row))
  })

const main = Effect.gen(function*() {
  const target = yield* brokerTarget
  const url = `mqtt://${target.host}:${target.port}`
  yield* say(`effect-mqtt demo, using the ${target.description}`)
  const rows: Array<Row> = []
  rows.push(yield* qosTour(url))
  yield* section(
    `A burst of ${BURST} QoS 1 messages into a queue of ${CAPACITY} (inflight window ${WINDOW}) while the network is stalled`,
    "\"suspend\" makes the publisher wait, \"dropping\" drops the newest, \"sliding\" evicts the oldest; every drop is counted and its receipt fails with MessageDropped"
  )
  for (const strategy of ["suspend", "dropping", "sliding"] as const) rows.push(yield* burst(target, url, strategy))
  rows.push(yield* tryPublishFull(target))
  rows.push(yield* outage(target))
  yield* printTable(rows)
}).pipe(Effect.scoped, Effect.timeout("2 minutes"))

NodeRuntime.runMain(main)
