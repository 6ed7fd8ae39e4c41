/**
 * Fault test 5: the broker is unreachable for 5 s while a publisher with a
 * queue of 100 keeps publishing. Under "suspend" the publisher waits and
 * everything arrives; under "dropping"/"sliding" exactly the reported number
 * of messages is missing and the rest arrive in order. Memory stays bounded
 * by the capacity, not by what was published.
 */
import * as V8 from "node:v8"
import * as Vm from "node:vm"
import { describe, expect, it } from "@effect/vitest"
import type { MqttClient } from "@effect-mqtt/core"
import { FaultProxy } from "@effect-mqtt/node"
import { Effect, Exit, Fiber } from "effect"
import { awaitConnected, awaitDisconnected, connect } from "../helpers/Clients.ts"
import { Mosquitto, requireBroker } from "../helpers/index.ts"
import { count, fastReconnect, makeTally, report } from "./shared.ts"

const CAPACITY = 100
const PUBLISHED = 1_000
const OUTAGE = "5 seconds"

const outage = (strategy: "suspend" | "dropping" | "sliding") =>
  Effect.gen(function*() {
    const broker = yield* Mosquitto.start().pipe(requireBroker)
    const proxy = yield* FaultProxy.start({ host: broker.host, port: broker.port })
    const subscriber = yield* connect(broker.url)
    const publisher = yield* connect(proxy.url, { capacity: CAPACITY, strategy, reconnect: fastReconnect })
    yield* awaitConnected(publisher)
    const topic = `outage/${strategy}`
    const tally = makeTally(PUBLISHED)
    yield* count(yield* subscriber.subscribeScoped(topic, { qos: 1 }), tally).pipe(Effect.forkScoped)

    yield* proxy.cut({ refuseFor: OUTAGE })
    yield* awaitDisconnected(publisher) // so that nothing is written into the dying connection
    const started = Date.now()
    const receipts: Array<MqttClient.PublishReceipt> = []
    const publishing = yield* Effect.gen(function*() {
      for (let i = 0; i < PUBLISHED; i++) receipts.push(yield* publisher.publish({ topic, payload: String(i), qos: 1 }))
    }).pipe(Effect.forkScoped)
    yield* Effect.sleep("1 second")
    const duringOutage = { returned: publishing.pollUnsafe() !== undefined, queued: (yield* publisher.stats).queueSize }
    yield* Fiber.join(publishing)
    const publishLoopMillis = Date.now() - started
    let acknowledged = 0
    let dropped = 0
    for (const receipt of receipts) {
      const exit = yield* Effect.exit(receipt.acknowledged)
      if (Exit.isSuccess(exit)) acknowledged++
      else dropped++
    }
    const stats = yield* publisher.stats
    // wait until the subscriber has every acknowledged message
    yield* Effect.gen(function*() {
      while (tally.distinct < acknowledged) yield* Effect.sleep("20 millis")
    }).pipe(Effect.timeout("10 seconds"))
    yield* report(`outage ${strategy}`, {
      capacity: CAPACITY,
      published: PUBLISHED,
      publishLoopMillis,
      queuedDuringOutage: duringOutage.queued,
      acknowledged,
      droppedReported: stats.dropped,
      received: tally.distinct,
      missing: PUBLISHED - tally.distinct,
      duplicates: tally.duplicates
    })
    expect(duringOutage.queued).toBe(CAPACITY)
    expect(dropped).toBe(stats.dropped)
    expect(PUBLISHED - tally.distinct).toBe(stats.dropped)
    const inOrder = tally.order.every((id, i) => i === 0 || id > tally.order[i - 1])
    expect(inOrder).toBe(true)
    return { stats, tally, duringOutage, publishLoopMillis }
  }).pipe(Effect.scoped, Effect.timeout("40 seconds"))

describe("broker unreachable for 5 s, capacity 100", () => {
  it.live("suspend: publishers wait, and everything arrives after recovery", () =>
    Effect.gen(function*() {
      const { stats, tally, duringOutage, publishLoopMillis } = yield* outage("suspend")
      expect(duringOutage.returned).toBe(false)
      expect(publishLoopMillis).toBeGreaterThanOrEqual(4_000)
      expect(stats.dropped).toBe(0)
      expect(tally.distinct).toBe(PUBLISHED)
    }), 45_000)

  it.live("dropping: the newest are dropped and counted; the first 100 arrive in order", () =>
    Effect.gen(function*() {
      const { stats, tally, duringOutage } = yield* outage("dropping")
      expect(duringOutage.returned).toBe(true)
      expect(stats.droppedNewest).toBe(PUBLISHED - CAPACITY)
      expect(tally.order).toEqual(Array.from({ length: CAPACITY }, (_, i) => i))
    }), 45_000)

  it.live("sliding: the oldest are evicted and counted; the last 100 arrive in order", () =>
    Effect.gen(function*() {
      const { stats, tally, duringOutage } = yield* outage("sliding")
      expect(duringOutage.returned).toBe(true)
      expect(stats.droppedOldest).toBe(PUBLISHED - CAPACITY)
      expect(tally.order).toEqual(Array.from({ length: CAPACITY }, (_, i) => PUBLISHED - CAPACITY + i))
    }), 45_000)
})

V8.setFlagsFromString("--expose-gc")
const gc = Vm.runInNewContext("gc") as () => void

const heapAfterGc = () => {
  gc()
  gc()
  return process.memoryUsage().heapUsed
}

describe("memory while offline", () => {
  for (const strategy of ["sliding", "dropping"] as const) {
    it.live(`${strategy}: 200,000 x 1 KiB published while offline grow the heap by about capacity x 1 KiB, not 200 MB`, () =>
      Effect.gen(function*() {
        const broker = yield* Mosquitto.start().pipe(requireBroker)
        const proxy = yield* FaultProxy.start({ host: broker.host, port: broker.port })
        const publisher = yield* connect(proxy.url, { capacity: CAPACITY, strategy, reconnect: fastReconnect })
        yield* awaitConnected(publisher)
        yield* proxy.cut({ refuseFor: "60 seconds" })
        yield* awaitDisconnected(publisher)
        const payload = new Uint8Array(1024)
        const before = heapAfterGc()
        for (let i = 0; i < 200_000; i++) yield* publisher.publish({ topic: "memory", payload, qos: 1 })
        const after = heapAfterGc()
        const stats = yield* publisher.stats
        const growthMb = (after - before) / 1024 / 1024
        yield* report(`memory ${strategy}`, {
          published: 200_000,
          payloadBytes: 1024,
          capacity: CAPACITY,
          queued: stats.queueSize,
          dropped: stats.dropped,
          heapGrowthMb: Number(growthMb.toFixed(2))
        })
        expect(stats.queueSize).toBe(CAPACITY)
        expect(stats.dropped).toBe(200_000 - CAPACITY)
        expect(growthMb).toBeLessThan(20)
      }).pipe(Effect.scoped, Effect.timeout("60 seconds")), 70_000)
  }
})

