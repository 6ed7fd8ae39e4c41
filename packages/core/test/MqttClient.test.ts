/**
 * The client against an in-memory broker: handshake, batching, keep-alive,
 * reconnection, malformed input, refused connections and bad input. Time is
 * the TestClock; no test sleeps.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Util from "node:util"
import { Effect, Exit, Fiber, Redacted, Stream } from "effect"
import * as TestClock from "effect/testing/TestClock"
import * as Socket from "effect/socket/Socket"
import { MqttClient, type MqttEvent } from "../src/index.ts"
import type { MqttClientOptions } from "../src/MqttOptions.ts"
import * as FakeBroker from "./utils/FakeBroker.ts"
import { makeClient, makeClientWithWrite, settle, recordEvents } from "./utils/TestClient.ts"




const tags = (events: ReadonlyArray<MqttEvent.MqttEvent>) => events.map((event) => event._tag)

describe("connection", () => {
  it.effect("sends CONNECT with the options and reports Connected", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make()
      const client = yield* makeClient(broker, {
        clientId: "c1",
        keepAlive: 30,
        username: "u",
        password: Redacted.make("secret"),
        will: { topic: "wills/c1", payload: "gone", qos: 1 }
      })
      yield* settle
      const connect = broker.received[0]
      expect(connect.cmd).toBe("connect")
      if (connect.cmd !== "connect") return
      expect(connect.clientId).toBe("c1")
      expect(connect.keepalive).toBe(30)
      expect(connect.username).toBe("u")
      expect(connect.password?.toString()).toBe("secret")
      expect(connect.will?.topic).toBe("wills/c1")
      expect((yield* client.stats).connected).toBe(true)
    }).pipe(Effect.scoped))

  it.effect("writes a burst of publishes in a few batched writes", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make()
      broker.gate.closeUnsafe()
      const client = yield* makeClient(broker, { capacity: 1000 })
      const receipts = []
      for (let i = 0; i < 1000; i++) receipts.push(yield* client.publish({ topic: "burst", payload: `m${i}` }))
      broker.gate.openUnsafe()
      for (const receipt of receipts) yield* receipt.acknowledged
      expect(broker.received.filter((p) => p.cmd === "publish")).toHaveLength(1000)
      // CONNECT, then the 1000 publishes in one batch
      expect(broker.writes.count).toBeLessThanOrEqual(3)
    }).pipe(Effect.scoped))

  it.effect("a burst of publishes while connected leaves in one write, not one write per publish", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make()
      const client = yield* makeClient(broker)
      yield* settle
      expect((yield* client.stats).connected).toBe(true)
      const before = broker.writes.count
      const receipts = []
      for (let i = 0; i < 100; i++) receipts.push(yield* client.publish({ topic: "burst", payload: `m${i}`, qos: 1 }))
      for (const receipt of receipts) yield* receipt.acknowledged
      expect(broker.received.filter((p) => p.cmd === "publish")).toHaveLength(100)
      // One write per scheduler turn of the publishing fiber (it yields every few hundred operations), where
      // waking the write loop per publish made it 100.
      expect(broker.writes.count - before).toBeLessThan(10)
    }).pipe(Effect.scoped))

  it.effect("a receipt can be awaited before and after its outcome, any number of times, and shows only topic and QoS", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make()
      const client = yield* makeClient(broker)
      yield* settle
      const early = yield* client.publish({ topic: "r/1", payload: "a", qos: 1 })
      const waiting = yield* Effect.forkChild(early.acknowledged) // asked before the PUBACK
      const late = yield* client.publish({ topic: "r/2", payload: "b", qos: 1 })
      yield* settle
      yield* Fiber.join(waiting)
      yield* late.acknowledged // asked after the PUBACK
      yield* late.acknowledged
      yield* early.acknowledged
      expect(Util.inspect(late)).toBe("{ _id: 'PublishReceipt', topic: 'r/2', qos: 1 }")
      expect(JSON.stringify(late)).toBe(JSON.stringify({ _id: "PublishReceipt", topic: "r/2", qos: 1 }))
    }).pipe(Effect.scoped))

  it.effect("when a read acknowledges several publishes, the first waiter to resume finds the others settled", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make({ acknowledge: false })
      const client = yield* makeClient(broker)
      yield* settle
      const receipts: Array<MqttClient.PublishReceipt> = []
      for (let i = 0; i < 3; i++) receipts.push(yield* client.publish({ topic: "w", payload: `m${i}`, qos: 1 }))
      yield* settle
      const ids = broker.received.flatMap((p) => (p.cmd === "publish" ? [p.messageId!] : []))
      expect(ids).toHaveLength(3)
      // A windowed publisher: waits on the oldest receipt, then looks at the next ones.
      const waiter = yield* Effect.forkChild(Effect.gen(function*() {
        yield* receipts[0].acknowledged
        return [Exit.isExit(receipts[1].acknowledged), Exit.isExit(receipts[2].acknowledged)]
      }))
      yield* Effect.yieldNow
      // Three PUBACKs in one socket write: one read.
      broker.sendRaw(Buffer.concat(ids.map((id) => Buffer.from([0x40, 2, id >> 8, id & 0xff]))))
      // Settled already (their outcome, not a wait), so the publisher goes on without suspending once per PUBACK.
      expect(yield* Fiber.join(waiter)).toEqual([true, true])
    }).pipe(Effect.scoped))

  it.effect("a refused CONNACK stops the client and fails pending work with ConnectionRefused", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make({ connackCode: 5 })
      broker.gate.closeUnsafe()
      const client = yield* makeClient(broker)
      const receipt = yield* client.publish({ topic: "t", payload: "x", qos: 1 })
      broker.gate.openUnsafe()
      const error = yield* Effect.flip(receipt.acknowledged)
      expect(error._tag).toBe("ConnectionRefused")
      expect(error.message).toContain("not authorized")
      yield* TestClock.adjust("1 minute")
      expect(broker.connections.count).toBe(1)
      const after = yield* Effect.flip(client.publish({ topic: "t", payload: "x" }))
      expect(after._tag).toBe("ClientClosed")
      expect(after.message).toContain("not authorized")
    }).pipe(Effect.scoped))

  it.effect("an unreachable broker times out the handshake and retries with growing, jittered delays", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make()
      broker.gate.closeUnsafe()
      const client = yield* makeClient(broker, { connectTimeout: "1 second" })
      const events = yield* recordEvents(client)
      for (let i = 0; i < 6; i++) yield* TestClock.adjust("40 seconds")
      const delays = events.flatMap((event) => event._tag === "Reconnecting" ? [event.delayMillis] : [])
      expect(delays.length).toBeGreaterThanOrEqual(5)
      // exponential from 100 ms with ±20% jitter
      expect(delays[0]).toBeGreaterThanOrEqual(80)
      expect(delays[0]).toBeLessThanOrEqual(120)
      expect(delays[3]).toBeGreaterThan(delays[0] * 4)
      const disconnected = events.find((event) => event._tag === "Disconnected")
      expect(disconnected?._tag === "Disconnected" && disconnected.cause._tag).toBe("ConnectTimeout")
    }).pipe(Effect.scoped))
})

describe("keep-alive", () => {
  it.effect("sends PINGREQ after keepAlive of silence", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make()
      yield* makeClient(broker, { keepAlive: 10 })
      yield* settle
      expect(broker.received.filter((p) => p.cmd === "pingreq")).toHaveLength(0)
      yield* TestClock.adjust("10 seconds")
      yield* settle
      expect(broker.received.filter((p) => p.cmd === "pingreq")).toHaveLength(1)
      yield* TestClock.adjust("10 seconds")
      yield* settle
      expect(broker.received.filter((p) => p.cmd === "pingreq")).toHaveLength(2)
      expect(broker.connections.count).toBe(1)
    }).pipe(Effect.scoped))

  it.effect("a silent broker is detected within 1.5 x keepAlive and the connection is replaced", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make({ answerPings: false })
      const client = yield* makeClient(broker, { keepAlive: 10 })
      const events = yield* recordEvents(client)
      yield* TestClock.adjust("14 seconds")
      yield* settle
      expect(tags(events)).not.toContain("Disconnected")
      yield* TestClock.adjust("1 second")
      yield* settle
      const disconnected = events.find((event) => event._tag === "Disconnected")
      expect(disconnected?._tag === "Disconnected" && disconnected.cause._tag).toBe("ConnectionLost")
      expect(disconnected?._tag === "Disconnected" && disconnected.cause.message).toContain("PINGREQ")
      yield* TestClock.adjust("1 second")
      yield* settle
      expect(broker.connections.count).toBe(2)
    }).pipe(Effect.scoped))
})

describe("faults", () => {
  it.effect("a malformed packet is a ProtocolError: the connection is replaced and nothing is lost", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make({ acknowledge: false })
      const client = yield* makeClient(broker)
      const events = yield* recordEvents(client)
      const receipt = yield* client.publish({ topic: "t", payload: "x", qos: 1 })
      yield* settle
      broker.sendRaw(new Uint8Array([0x36, 0x00])) // PUBLISH with both QoS bits set
      yield* settle
      const disconnected = events.find((event) => event._tag === "Disconnected")
      expect(disconnected?._tag === "Disconnected" && disconnected.cause._tag).toBe("ProtocolError")
      yield* TestClock.adjust("1 second")
      yield* settle
      expect(broker.connections.count).toBe(2)
      // the unacknowledged QoS 1 message was sent again on the new connection
      const publishes = broker.received.filter((p) => p.cmd === "publish")
      expect(publishes).toHaveLength(2)
      broker.send({ cmd: "puback", messageId: publishes[1].messageId! })
      yield* receipt.acknowledged
    }).pipe(Effect.scoped))

  it.effect("QoS 0 publishes in a socket write that fails get a failed receipt, not one that never settles", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make()
      let failed = 0
      const client = yield* makeClientWithWrite(broker, (chunk, write) =>
        chunk instanceof Uint8Array && (chunk[0] & 0xf0) === 0x30 && failed++ === 0
          ? Effect.fail(new Socket.SocketError({ reason: new Socket.SocketWriteError({ cause: new Error("EPIPE") }) }))
          : write(chunk))
      yield* settle
      const lost = yield* client.publish({ topic: "lost", payload: "x" })
      yield* settle
      expect(failed).toBe(1)
      const error = yield* Effect.flip(lost.acknowledged)
      expect(error._tag).toBe("ConnectionLost")
      // The client reconnects and the next QoS 0 publish is written and settled.
      yield* TestClock.adjust("1 second")
      yield* settle
      const next = yield* client.publish({ topic: "next", payload: "y" })
      yield* settle
      yield* next.acknowledged
      expect(broker.received.filter((p) => p.cmd === "publish").map((p) => p.cmd === "publish" && p.topic)).toEqual(["next"])
    }).pipe(Effect.scoped))

  it.effect("a dropped connection reconnects and resubscribes active subscriptions", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make()
      const client = yield* makeClient(broker)
      const stream = yield* client.subscribe("a/+", { qos: 1 }).pipe(Stream.take(1), Stream.runCollect, Effect.forkScoped)
      yield* settle
      broker.drop()
      yield* TestClock.adjust("1 second")
      yield* settle
      expect(broker.received.filter((p) => p.cmd === "subscribe")).toHaveLength(2)
      broker.send({ cmd: "publish", topic: "a/b", payload: Buffer.from("after"), qos: 0, dup: false, retain: false })
      const messages = yield* Fiber.join(stream)
      expect(messages.map((m) => m.topic)).toEqual(["a/b"])
    }).pipe(Effect.scoped))

  it.effect("a rejected subscription fails its stream with SubscribeRejected", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make({ subackCode: 0x80 })
      const client = yield* makeClient(broker)
      const error = yield* client.subscribe("secret/#", { qos: 1 }).pipe(Stream.runCollect, Effect.flip)
      expect(error._tag).toBe("SubscribeRejected")
      expect(error.message).toContain("secret/#")
    }).pipe(Effect.scoped))
})

describe("broker answers", () => {
  it.effect("a v5 PUBACK failure code fails the receipt with PublishRejected carrying the code", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make({ protocolVersion: 5, acknowledge: false })
      const client = yield* makeClient(broker, { protocolVersion: 5 })
      const receipt = yield* client.publish({ topic: "denied", payload: "x", qos: 1 })
      yield* settle
      const publish = broker.received.find((p) => p.cmd === "publish")
      broker.send({ cmd: "puback", messageId: publish!.messageId!, reasonCode: 0x87, properties: { reasonString: "not yours" } })
      const error = yield* Effect.flip(receipt.acknowledged)
      expect(error._tag).toBe("PublishRejected")
      if (error._tag !== "PublishRejected") return
      expect(error.code).toBe(0x87)
      expect(error.message).toContain("not yours")
      expect((yield* client.stats).inflight).toBe(0)
    }).pipe(Effect.scoped))

  it.effect("a defect in the transport is logged and the loop carries on with a new connection", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make()
      let failures = 0
      const client = yield* makeClientWithWrite(broker, (chunk, write) =>
        failures++ === 0 ? Effect.die(new Error("boom")) : write(chunk))
      yield* settle
      yield* TestClock.adjust("1 second")
      yield* settle
      expect(failures).toBe(2)
      yield* client.publishAndWait({ topic: "after/defect", payload: "x", qos: 1 })
      expect((yield* client.stats).connections).toBe(1)
    }).pipe(Effect.scoped))
})

describe("laziness", () => {
  it.effect("publish does nothing until the effect runs, and publishes again each time it runs", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make()
      const client = yield* makeClient(broker)
      const once = client.publish({ topic: "lazy", payload: "x" })
      const tried = client.tryPublish({ topic: "lazy", payload: "y" })
      yield* settle
      expect((yield* client.stats).sent).toBe(0)
      yield* once
      yield* once
      yield* tried
      yield* settle
      expect(broker.received.filter((p) => p.cmd === "publish")).toHaveLength(3)
    }).pipe(Effect.scoped))
  it.effect("the message is read when publish is called: changing the object afterwards changes nothing", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make()
      const client = yield* makeClient(broker)
      const message = { topic: "first", payload: "1", qos: 1 as const, retain: false }
      const publish = client.publish(message)
      message.topic = "second"
      message.payload = "2"
      yield* publish
      yield* publish
      yield* settle
      const sent = broker.received.flatMap((p) => p.cmd === "publish" ? [[p.topic, String(p.payload), p.qos]] : [])
      expect(sent).toEqual([["first", "1", 1], ["first", "1", 1]])
    }).pipe(Effect.scoped))

  it.effect("one publish effect yielded by concurrent fibers enqueues once per run, each with its own receipt", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make()
      const client = yield* makeClient(broker)
      const publish = client.publish({ topic: "shared", payload: "x", qos: 1 })
      const receipts = yield* Effect.all(
        Array.from({ length: 5 }, () => Effect.gen(function*() { return yield* publish })),
        { concurrency: "unbounded" }
      )
      expect(new Set(receipts).size).toBe(5)
      yield* Effect.forEach(receipts, (receipt) => receipt.acknowledged, { discard: true })
      expect(broker.received.filter((p) => p.cmd === "publish")).toHaveLength(5)
    }).pipe(Effect.scoped))
})

describe("bad input", () => {
  it.effect("invalid topics and QoS fail before anything is queued", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make()
      broker.gate.closeUnsafe()
      const client = yield* makeClient(broker)
      const bad = [
        { topic: "a/+", payload: "x" },
        { topic: "a/#", payload: "x" },
        { topic: "", payload: "x" },
        { topic: "a\u0000b", payload: "x" },
        { topic: "x".repeat(65_536), payload: "x" },
        { topic: "é".repeat(40_000), payload: "x" },
        { topic: "ok", payload: "x", qos: 3 as never },
        { topic: "ok", payload: 42 as never },
        null as never,
        undefined as never,
        "a/b" as never
      ]
      for (const message of bad) {
        const error = yield* Effect.flip(client.publish(message))
        expect(["InvalidTopic", "InvalidOptions"]).toContain(error._tag)
        if (typeof message !== "object" || message === null) expect(error.message).toContain("a message must be an object")
        const error2 = yield* Effect.flip(client.tryPublish(message))
        expect(error2._tag).toBe(error._tag)
      }
      const filterError = yield* client.subscribe("a/#/b").pipe(Stream.runCollect, Effect.flip)
      expect(filterError._tag).toBe("InvalidTopic")
      expect((yield* client.stats).queueSize).toBe(0)
    }).pipe(Effect.scoped))

  it.effect("invalid options are a typed InvalidOptions and never show the password", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make()
      const cases: Array<MqttClientOptions> = [
        { capacity: 0 },
        { capacity: 1.5 },
        { strategy: "newest" as never },
        { protocolVersion: 3 as never },
        { keepAlive: -1 },
        { maxInflight: 70_000 },
        { connectTimeout: "soon" as never },
        { password: "plain-secret" as never, username: "u" },
        { password: Redacted.make("hunter2") },
        { will: { topic: "a/+", payload: "x" }, password: Redacted.make("hunter2"), username: "u" }
      ]
      for (const options of cases) {
        const error = yield* Effect.flip(makeClient(broker, options)).pipe(Effect.scoped)
        expect(error._tag).toBe("InvalidOptions")
        const shown = `${error.message} ${String(error)} ${JSON.stringify(error)}`
        expect(shown).not.toContain("hunter2")
        expect(shown).not.toContain("plain-secret")
      }
    }))
})
