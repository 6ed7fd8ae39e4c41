/**
 * Every cell of the "what a full queue does" table, with a transport that is
 * stalled (the broker does not accept connections until the test opens its
 * gate). No sleeps: fibers are observed after yielding, time is the TestClock.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Stream } from "effect"
import * as FakeBroker from "./utils/FakeBroker.ts"
import { makeClient, settle } from "./utils/TestClient.ts"



const stalledBroker = Effect.gen(function*() {
  const broker = yield* FakeBroker.make()
  broker.gate.closeUnsafe()
  return broker
})

const publishedTopics = (broker: FakeBroker.FakeBroker) =>
  broker.received.flatMap((packet) => packet.cmd === "publish" ? [packet.topic] : [])

describe("strategy suspend", () => {
  it.effect("publish suspends while the queue is full and resumes when space frees", () =>
    Effect.gen(function*() {
      const broker = yield* stalledBroker
      const client = yield* makeClient(broker, { capacity: 2, strategy: "suspend" })
      const a = yield* client.publish({ topic: "t/a", payload: "a", qos: 1 })
      const b = yield* client.publish({ topic: "t/b", payload: "b", qos: 1 })
      const c = yield* client.publish({ topic: "t/c", payload: "c", qos: 1 }).pipe(Effect.forkChild)
      yield* settle
      expect(c.pollUnsafe()).toBeUndefined()
      expect((yield* client.stats).queueSize).toBe(2)

      broker.gate.openUnsafe()
      const receiptC = yield* Fiber.join(c)
      yield* a.acknowledged
      yield* b.acknowledged
      yield* receiptC.acknowledged
      expect(publishedTopics(broker)).toEqual(["t/a", "t/b", "t/c"])
    }).pipe(Effect.scoped))

  it.effect("an interrupted suspended publish enqueues nothing", () =>
    Effect.gen(function*() {
      const broker = yield* stalledBroker
      const client = yield* makeClient(broker, { capacity: 1, strategy: "suspend" })
      yield* client.publish({ topic: "t/a", payload: "a", qos: 1 })
      const blocked = yield* client.publish({ topic: "t/b", payload: "b", qos: 1 }).pipe(Effect.forkChild)
      yield* settle
      yield* Fiber.interrupt(blocked)
      expect((yield* client.stats).queueSize).toBe(1)
      broker.gate.openUnsafe()
      const last = yield* client.publish({ topic: "t/c", payload: "c", qos: 1 })
      yield* last.acknowledged
      expect(publishedTopics(broker)).toEqual(["t/a", "t/c"])
    }).pipe(Effect.scoped))

  it.effect("tryPublish fails with QueueFull at once", () =>
    Effect.gen(function*() {
      const broker = yield* stalledBroker
      const client = yield* makeClient(broker, { capacity: 1, strategy: "suspend" })
      yield* client.tryPublish({ topic: "t/a", payload: "a" })
      const error = yield* Effect.flip(client.tryPublish({ topic: "t/b", payload: "b" }))
      expect(error._tag).toBe("QueueFull")
      expect(error.message).toContain("capacity 1")
      expect((yield* client.stats).queueSize).toBe(1)
    }).pipe(Effect.scoped))
})

describe("strategy dropping", () => {
  it.effect("publish drops the new message, counts it and fails its receipt", () =>
    Effect.gen(function*() {
      const broker = yield* stalledBroker
      const client = yield* makeClient(broker, { capacity: 2, strategy: "dropping" })
      const a = yield* client.publish({ topic: "t/a", payload: "a", qos: 1 })
      const b = yield* client.publish({ topic: "t/b", payload: "b", qos: 1 })
      const c = yield* client.publish({ topic: "t/c", payload: "c", qos: 1 })
      const dropped = yield* Effect.flip(c.acknowledged)
      expect(dropped._tag).toBe("MessageDropped")
      const stats = yield* client.stats
      expect(stats.dropped).toBe(1)
      expect(stats.droppedNewest).toBe(1)
      expect(stats.queueSize).toBe(2)

      broker.gate.openUnsafe()
      yield* a.acknowledged
      yield* b.acknowledged
      expect(publishedTopics(broker)).toEqual(["t/a", "t/b"])
    }).pipe(Effect.scoped))

  it.effect("tryPublish fails with QueueFull at once and counts nothing", () =>
    Effect.gen(function*() {
      const broker = yield* stalledBroker
      const client = yield* makeClient(broker, { capacity: 1, strategy: "dropping" })
      yield* client.tryPublish({ topic: "t/a", payload: "a" })
      const error = yield* Effect.flip(client.tryPublish({ topic: "t/b", payload: "b" }))
      expect(error._tag).toBe("QueueFull")
      expect((yield* client.stats).dropped).toBe(0)
    }).pipe(Effect.scoped))
})

describe("strategy sliding", () => {
  it.effect("publish evicts the oldest queued message, counts it and fails its receipt", () =>
    Effect.gen(function*() {
      const broker = yield* stalledBroker
      const client = yield* makeClient(broker, { capacity: 2, strategy: "sliding" })
      const a = yield* client.publish({ topic: "t/a", payload: "a", qos: 1 })
      const b = yield* client.publish({ topic: "t/b", payload: "b", qos: 1 })
      const c = yield* client.publish({ topic: "t/c", payload: "c", qos: 1 })
      const evicted = yield* Effect.flip(a.acknowledged)
      expect(evicted._tag).toBe("MessageDropped")
      expect(evicted.message).toContain("evicted")
      expect((yield* client.stats).droppedOldest).toBe(1)

      broker.gate.openUnsafe()
      yield* b.acknowledged
      yield* c.acknowledged
      expect(publishedTopics(broker)).toEqual(["t/b", "t/c"])
    }).pipe(Effect.scoped))

  it.effect("tryPublish behaves like publish: never fails for fullness", () =>
    Effect.gen(function*() {
      const broker = yield* stalledBroker
      const client = yield* makeClient(broker, { capacity: 1, strategy: "sliding" })
      const a = yield* client.tryPublish({ topic: "t/a", payload: "a" })
      const b = yield* client.tryPublish({ topic: "t/b", payload: "b" })
      expect((yield* Effect.flip(a.acknowledged))._tag).toBe("MessageDropped")
      broker.gate.openUnsafe()
      yield* b.acknowledged
      expect(publishedTopics(broker)).toEqual(["t/b"])
      expect((yield* client.stats).dropped).toBe(1)
    }).pipe(Effect.scoped))
})

describe("control traffic", () => {
  it.effect("subscribe is not held up behind a full publish queue or a full inflight window", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make({ acknowledge: false })
      const client = yield* makeClient(broker, { capacity: 2, strategy: "suspend", maxInflight: 1 })
      yield* client.publish({ topic: "t/1", payload: "1", qos: 1 }) // inflight, never acknowledged
      yield* settle
      yield* client.publish({ topic: "t/2", payload: "2", qos: 1 })
      yield* client.publish({ topic: "t/3", payload: "3", qos: 1 })
      const blocked = yield* client.publish({ topic: "t/4", payload: "4", qos: 1 }).pipe(Effect.forkChild)
      yield* settle
      expect(blocked.pollUnsafe()).toBeUndefined()

      const messages = yield* client.subscribe("in/#", { qos: 1 }).pipe(Stream.take(1), Stream.runCollect, Effect.forkChild)
      yield* settle
      broker.send({ cmd: "publish", topic: "in/x", payload: Buffer.from("hello"), qos: 1, messageId: 7, dup: false, retain: false })
      const received = yield* Fiber.join(messages)
      expect(received.map((m) => m.topic)).toEqual(["in/x"])
      // the incoming QoS 1 message was acknowledged although our own publishes are stuck
      expect(broker.received.some((p) => p.cmd === "puback" && p.messageId === 7)).toBe(true)
      expect(blocked.pollUnsafe()).toBeUndefined()
    }).pipe(Effect.scoped))
})

describe("closing", () => {
  it.effect("closing the scope fails pending receipts with ClientClosed and ends subscriptions", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make({ acknowledge: false })
      const { receipt, subscription } = yield* Effect.gen(function*() {
        const client = yield* makeClient(broker, { capacity: 4 })
        const subscription = yield* client.subscribe("x").pipe(Stream.runCollect, Effect.forkDetach)
        const receipt = yield* client.publish({ topic: "t", payload: "p", qos: 1 })
        yield* settle
        return { receipt, subscription }
      }).pipe(Effect.scoped)
      const exit = yield* Effect.exit(receipt.acknowledged)
      expect(Exit.isFailure(exit) && exit.cause.reasons[0]._tag === "Fail" && (exit.cause.reasons[0] as any).error._tag).toBe(
        "ClientClosed"
      )
      const collected = yield* Fiber.join(subscription)
      expect(collected).toEqual([])
      expect(broker.received.at(-1)?.cmd).toBe("disconnect")
    }))
})
