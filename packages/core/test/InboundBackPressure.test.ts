/**
 * Inbound back-pressure: each subscription has a bounded buffer; QoS 1/2
 * messages are acknowledged only once they are in it, so a slow consumer
 * slows the broker down instead of growing our memory.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, Stream } from "effect"
import * as TestClock from "effect/testing/TestClock"
import { MqttMessage } from "../src/index.ts"
import * as FakeBroker from "./utils/FakeBroker.ts"
import { makeClient, settle } from "./utils/TestClient.ts"

const incoming = (topic: string, id: number, qos: 0 | 1 | 2 = 1) =>
  ({ cmd: "publish", topic, payload: Buffer.from(String(id)), qos, messageId: id, dup: false, retain: false }) as const

const acked = (broker: FakeBroker.FakeBroker) =>
  broker.received.flatMap((p) => p.cmd === "puback" || p.cmd === "pubrec" ? [p.messageId] : [])

const texts = (messages: Iterable<MqttMessage.MqttMessage>) => Array.from(messages, MqttMessage.text)

describe("inbound back-pressure", () => {
  it.effect("suspend: QoS 1 beyond the buffer is acknowledged only when the consumer makes room", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make()
      const client = yield* makeClient(broker)
      const messages = yield* client.subscribeScoped("in", { qos: 1, bufferSize: 2 })
      for (let id = 1; id <= 5; id++) broker.send(incoming("in", id))
      yield* settle
      expect(acked(broker)).toEqual([1, 2])
      const got = yield* messages.pipe(Stream.take(5), Stream.runCollect)
      yield* settle
      expect(acked(broker)).toEqual([1, 2, 3, 4, 5])
      expect(texts(got)).toEqual(["1", "2", "3", "4", "5"])
      expect((yield* client.stats).droppedIncoming).toBe(0)
    }).pipe(Effect.scoped))

  it.effect("suspend: QoS 2 PUBREC waits for the buffer too", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make()
      const client = yield* makeClient(broker)
      const messages = yield* client.subscribeScoped("in", { qos: 2, bufferSize: 1 })
      broker.send(incoming("in", 1, 2))
      broker.send(incoming("in", 2, 2))
      yield* settle
      expect(acked(broker)).toEqual([1])
      yield* messages.pipe(Stream.take(1), Stream.runDrain)
      yield* settle
      expect(acked(broker)).toEqual([1, 2])
    }).pipe(Effect.scoped))

  it.effect("suspend: QoS 0 beyond the buffer and another bufferSize waiting is dropped and counted", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make()
      const client = yield* makeClient(broker)
      const messages = yield* client.subscribeScoped("in", { qos: 0, bufferSize: 2 })
      for (let id = 1; id <= 10; id++) broker.send(incoming("in", id, 0))
      yield* settle
      expect((yield* client.stats).droppedIncoming).toBe(6)
      const got = yield* messages.pipe(Stream.take(4), Stream.runCollect)
      expect(texts(got)).toEqual(["1", "2", "3", "4"])
    }).pipe(Effect.scoped))

  it.effect("dropping: the newest are dropped and counted, everything is acknowledged at once", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make()
      const client = yield* makeClient(broker)
      const messages = yield* client.subscribeScoped("in", { qos: 1, bufferSize: 2, strategy: "dropping" })
      for (let id = 1; id <= 5; id++) broker.send(incoming("in", id))
      yield* settle
      expect(acked(broker)).toEqual([1, 2, 3, 4, 5])
      expect((yield* client.stats).droppedIncoming).toBe(3)
      expect(texts(yield* messages.pipe(Stream.take(2), Stream.runCollect))).toEqual(["1", "2"])
    }).pipe(Effect.scoped))

  it.effect("sliding: the oldest are dropped and counted; the latest stay", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make()
      const client = yield* makeClient(broker)
      const messages = yield* client.subscribeScoped("in", { qos: 1, bufferSize: 2, strategy: "sliding" })
      for (let id = 1; id <= 5; id++) broker.send(incoming("in", id))
      yield* settle
      expect(acked(broker)).toEqual([1, 2, 3, 4, 5])
      expect((yield* client.stats).droppedIncoming).toBe(3)
      expect(texts(yield* messages.pipe(Stream.take(2), Stream.runCollect))).toEqual(["4", "5"])
    }).pipe(Effect.scoped))

  it.effect("a slow subscriber never holds up the acknowledgements of our own publishes", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make()
      const client = yield* makeClient(broker)
      yield* client.subscribeScoped("in", { qos: 1, bufferSize: 1 }) // never read
      for (let id = 1; id <= 50; id++) broker.send(incoming("in", id))
      yield* settle
      yield* client.publishAndWait({ topic: "out", payload: "mine", qos: 1 })
      yield* client.publishAndWait({ topic: "out", payload: "mine too", qos: 2 })
    }).pipe(Effect.scoped))

  it.effect("overlapping subscriptions: acknowledged once the message is in every matching buffer", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make()
      const client = yield* makeClient(broker)
      const wide = yield* client.subscribeScoped("in/#", { qos: 1, bufferSize: 1 })
      const narrow = yield* client.subscribeScoped("in/x", { qos: 1, bufferSize: 5 })
      broker.send(incoming("in/x", 1))
      broker.send(incoming("in/x", 2))
      yield* settle
      expect(acked(broker)).toEqual([1])
      expect(texts(yield* narrow.pipe(Stream.take(2), Stream.runCollect))).toEqual(["1", "2"])
      yield* settle
      expect(acked(broker)).toEqual([1]) // still waiting for room in `wide`
      yield* wide.pipe(Stream.take(1), Stream.runDrain)
      yield* settle
      expect(acked(broker)).toEqual([1, 2])
    }).pipe(Effect.scoped))

  it.effect("an acknowledgement owed on a lost connection is not sent on the next one", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make()
      const client = yield* makeClient(broker)
      const messages = yield* client.subscribeScoped("in", { qos: 1, bufferSize: 1 })
      broker.send(incoming("in", 1))
      broker.send(incoming("in", 2))
      yield* settle
      broker.drop()
      yield* TestClock.adjust("1 second")
      yield* settle
      const reader = yield* messages.pipe(Stream.take(2), Stream.runCollect, Effect.forkScoped)
      yield* settle
      expect(texts(yield* Fiber.join(reader))).toEqual(["1", "2"])
      // PUBACK 1 went out on the first connection; PUBACK 2 was owed there and is not sent later
      expect(acked(broker)).toEqual([1])
    }).pipe(Effect.scoped))

  it.effect("bufferSize and strategy are validated", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make()
      const client = yield* makeClient(broker)
      for (const options of [{ bufferSize: 0 }, { bufferSize: 1.5 }, { strategy: "latest" as never }]) {
        const error = yield* client.subscribe("in", options).pipe(Stream.runDrain, Effect.flip)
        expect(error._tag).toBe("InvalidOptions")
      }
    }).pipe(Effect.scoped))
})
