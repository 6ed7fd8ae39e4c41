/**
 * Connection lifecycle against the in-memory broker, with the TestClock:
 * sessions, resends, back-off, failover, expiry, offline QoS 0, disconnect.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Stream } from "effect"
import * as TestClock from "effect/testing/TestClock"
import { MqttClient, type MqttEvent } from "../src/index.ts"
import * as FakeBroker from "./utils/FakeBroker.ts"
import { makeClient, settle, recordEvents } from "./utils/TestClient.ts"




const reconnectDelays = (events: ReadonlyArray<MqttEvent.MqttEvent>) =>
  events.flatMap((event) => event._tag === "Reconnecting" ? [event.delayMillis] : [])

/** The packets of the n-th connection (1-based): from its CONNECT to the next one. */
const connection = (broker: FakeBroker.FakeBroker, n: number) => {
  const starts = broker.received.flatMap((p, i) => p.cmd === "connect" ? [i] : [])
  return broker.received.slice(starts[n - 1], starts[n] ?? broker.received.length)
}

const errorTag = (exit: Exit.Exit<unknown, { readonly _tag: string }>) =>
  Exit.isFailure(exit) && exit.cause.reasons[0]._tag === "Fail" ? exit.cause.reasons[0].error._tag : "none"

describe("sessions", () => {
  it.effect("session present: unacknowledged PUBLISHes (DUP) and PUBRELs are resent in order, before new publishes", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make({ acknowledge: false, sessionPresent: true })
      const client = yield* makeClient(broker, { cleanSession: false, clientId: "persistent" })
      const a = yield* client.publish({ topic: "a", payload: "1", qos: 1 })
      const b = yield* client.publish({ topic: "b", payload: "2", qos: 2 })
      const c = yield* client.publish({ topic: "c", payload: "3", qos: 1 })
      yield* settle
      const first = connection(broker, 1).filter((p) => p.cmd === "publish")
      broker.send({ cmd: "pubrec", messageId: first[1].messageId! }) // b is now awaiting PUBCOMP
      yield* settle
      broker.gate.closeUnsafe()
      broker.drop()
      const d = yield* client.publish({ topic: "d", payload: "4", qos: 1 }) // queued while offline
      yield* TestClock.adjust("1 second")
      broker.gate.openUnsafe()
      yield* TestClock.adjust("1 second")
      yield* settle
      const second = connection(broker, 2).slice(1).map((p) =>
        p.cmd === "publish" ? `publish ${p.topic}${p.dup ? " dup" : ""}` : p.cmd
      )
      expect(second).toEqual(["publish a dup", "pubrel", "publish c dup", "publish d"])
      // the same packet ids as before
      const resent = connection(broker, 2).filter((p) => p.cmd === "publish" && p.dup)
      expect(resent.map((p) => p.messageId)).toEqual([first[0].messageId, first[2].messageId])
      for (const p of connection(broker, 2)) {
        if (p.cmd === "publish" && p.qos === 1) broker.send({ cmd: "puback", messageId: p.messageId! })
        if (p.cmd === "pubrel") broker.send({ cmd: "pubcomp", messageId: p.messageId! })
      }
      yield* a.acknowledged
      yield* b.acknowledged
      yield* c.acknowledged
      yield* d.acknowledged
    }).pipe(Effect.scoped))

  it.effect("session not present: subscriptions are restored before publishes, and unacknowledged messages are republished", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make({ acknowledge: false })
      const client = yield* makeClient(broker)
      yield* client.subscribeScoped("s/#", { qos: 1 })
      const a = yield* client.publish({ topic: "a", payload: "1", qos: 1 })
      yield* settle
      broker.drop()
      yield* TestClock.adjust("1 second")
      yield* settle
      const second = connection(broker, 2).slice(1).map((p) =>
        p.cmd === "publish" ? `publish ${p.topic}${p.dup ? " dup" : ""}` : p.cmd
      )
      expect(second).toEqual(["subscribe", "publish a"])
      const republished = connection(broker, 2).find((p) => p.cmd === "publish")!
      broker.send({ cmd: "puback", messageId: republished.messageId! })
      yield* a.acknowledged
    }).pipe(Effect.scoped))

  it.effect("onSessionLost: \"fail\" fails unacknowledged receipts with SessionLost", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make({ acknowledge: false })
      const client = yield* makeClient(broker, { onSessionLost: "fail" })
      const a = yield* client.publish({ topic: "a", payload: "1", qos: 1 })
      yield* settle
      broker.drop()
      yield* TestClock.adjust("1 second")
      yield* settle
      const error = yield* Effect.flip(a.acknowledged)
      expect(error._tag).toBe("SessionLost")
      expect(connection(broker, 2).filter((p) => p.cmd === "publish")).toHaveLength(0)
    }).pipe(Effect.scoped))

  it.effect("an incoming QoS 2 message redelivered after a reconnect is delivered once", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make({ sessionPresent: true })
      const client = yield* makeClient(broker, { cleanSession: false, clientId: "q2" })
      const messages = yield* client.subscribeScoped("q2", { qos: 2 })
      const collected = yield* messages.pipe(Stream.take(2), Stream.runCollect, Effect.forkScoped)
      const message = (payload: string, dup: boolean) =>
        ({ cmd: "publish", topic: "q2", payload: Buffer.from(payload), qos: 2, messageId: 5, dup, retain: false }) as const
      broker.send(message("once", false))
      yield* settle
      broker.drop() // our PUBREC may not have arrived: the broker sends the message again
      yield* TestClock.adjust("1 second")
      yield* settle
      broker.send(message("once", true))
      broker.send({ cmd: "pubrel", messageId: 5 })
      yield* settle
      broker.send(message("next", false)) // after PUBREL, id 5 is a new message
      broker.send({ cmd: "pubrel", messageId: 5 })
      yield* settle
      const got = yield* Fiber.join(collected)
      expect(got.map((m) => Buffer.from(m.payload).toString())).toEqual(["once", "next"])
      expect(broker.received.filter((p) => p.cmd === "pubcomp")).toHaveLength(2)
    }).pipe(Effect.scoped))
})

describe("flow control", () => {
  it.effect("the inflight window is min(maxInflight, the broker's Receive Maximum)", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make({ protocolVersion: 5, acknowledge: false, connackProperties: { receiveMaximum: 2 } })
      const client = yield* makeClient(broker, { protocolVersion: 5, maxInflight: 10 })
      for (let i = 0; i < 5; i++) yield* client.publish({ topic: "w", payload: `${i}`, qos: 1 })
      yield* settle
      const sent = broker.received.filter((p) => p.cmd === "publish")
      expect(sent).toHaveLength(2)
      expect((yield* client.stats).queueSize).toBe(3)
      broker.send({ cmd: "puback", messageId: sent[0].messageId! })
      yield* settle
      expect(broker.received.filter((p) => p.cmd === "publish")).toHaveLength(3)
    }).pipe(Effect.scoped))
})

describe("reconnection", () => {
  it.effect("delays grow while attempts fail, and reset after a connection stayed up", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make({ connackCode: 3 }) // "server unavailable": retried
      const client = yield* makeClient(broker)
      const events = yield* recordEvents(client)
      for (let i = 0; i < 4; i++) {
        yield* TestClock.adjust("5 seconds")
        yield* settle
      }
      const growing = reconnectDelays(events)
      expect(growing.length).toBeGreaterThanOrEqual(4)
      for (let i = 1; i < growing.length; i++) expect(growing[i]).toBeGreaterThan(growing[i - 1])
      // jittered: not exact powers of two
      expect(growing.some((delay, i) => delay !== 100 * 2 ** i)).toBe(true)
      broker.options.connackCode = 0
      yield* TestClock.adjust("10 seconds") // connects and stays up
      yield* settle
      expect((yield* client.stats).connected).toBe(true)
      const before = reconnectDelays(events).length
      broker.drop()
      yield* settle
      const [afterStable] = reconnectDelays(events).slice(before)
      expect(afterStable).toBeLessThanOrEqual(120)
      const attempts = events.flatMap((event) => event._tag === "Reconnecting" ? [event.attempt] : [])
      expect(attempts.at(-1)).toBe(1)
    }).pipe(Effect.scoped))

  it.effect("reconnect: false stays down and fails pending work with the connection error", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make({ acknowledge: false })
      const client = yield* makeClient(broker, { reconnect: false })
      const receipt = yield* client.publish({ topic: "a", payload: "1", qos: 1 })
      yield* settle
      broker.drop()
      yield* settle
      expect((yield* Effect.flip(receipt.acknowledged))._tag).toBe("ConnectionLost")
      yield* TestClock.adjust("1 minute")
      expect(broker.connections.count).toBe(1)
    }).pipe(Effect.scoped))

  it.effect("retryRefused decides whether a refused CONNACK is retried", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make({ connackCode: 4 })
      const client = yield* makeClient(broker, { retryRefused: (error) => error.code === 4 })
      yield* TestClock.adjust("1 second")
      yield* settle
      broker.options.connackCode = 0
      yield* TestClock.adjust("2 seconds")
      yield* settle
      expect(broker.connections.count).toBeGreaterThanOrEqual(3)
      expect((yield* client.stats).connected).toBe(true)
    }).pipe(Effect.scoped))

  it.effect("attempts rotate through several brokers", () =>
    Effect.gen(function*() {
      const down = yield* FakeBroker.make()
      down.gate.closeUnsafe()
      const up = yield* FakeBroker.make()
      const client = yield* MqttClient.makeWithSockets({ connectTimeout: "1 second" }, [down.socket, up.socket])
      yield* TestClock.adjust("1 second")
      yield* TestClock.adjust("1 second")
      yield* settle
      expect((yield* client.stats).connected).toBe(true)
      expect(up.connections.count).toBe(1)
      yield* client.publishAndWait({ topic: "failover", payload: "x", qos: 1 })
    }).pipe(Effect.scoped))
})

describe("while disconnected", () => {
  it.effect("messageExpiry drops queued messages that waited too long, with MessageExpired", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make({ protocolVersion: 5 })
      broker.gate.closeUnsafe()
      const client = yield* makeClient(broker, { protocolVersion: 5, messageExpiry: "5 seconds", connectTimeout: "1 minute" })
      const old = yield* client.publish({ topic: "old", payload: "stale", qos: 1 })
      yield* TestClock.adjust("6 seconds")
      const fresh = yield* client.publish({ topic: "fresh", payload: "new", qos: 1 })
      broker.gate.openUnsafe()
      yield* fresh.acknowledged
      const error = yield* Effect.flip(old.acknowledged)
      expect(error._tag).toBe("MessageExpired")
      expect((yield* client.stats).expired).toBe(1)
      const sent = broker.received.filter((p) => p.cmd === "publish")
      expect(sent.map((p) => p.cmd === "publish" && p.topic)).toEqual(["fresh"])
      expect(sent[0].cmd === "publish" && sent[0].properties?.messageExpiryInterval).toBe(5)
    }).pipe(Effect.scoped))

  it.effect("queueQoS0WhileOffline: false drops QoS 0 at once while offline and still queues QoS 1", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make()
      broker.gate.closeUnsafe()
      const client = yield* makeClient(broker, { queueQoS0WhileOffline: false })
      const q0 = yield* client.publish({ topic: "t", payload: "0", qos: 0 })
      const q1 = yield* client.publish({ topic: "t", payload: "1", qos: 1 })
      const error = yield* Effect.flip(q0.acknowledged)
      expect(error._tag === "MessageDropped" && error.reason).toBe("offline")
      expect((yield* client.stats).droppedOffline).toBe(1)
      broker.gate.openUnsafe()
      yield* q1.acknowledged
      yield* client.publishAndWait({ topic: "t", payload: "online", qos: 0 })
    }).pipe(Effect.scoped))
})

describe("disconnect", () => {
  it.effect("with drain, waits until everything is acknowledged, then DISCONNECT is the last packet", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make({ acknowledge: false })
      const client = yield* makeClient(broker)
      const receipt = yield* client.publish({ topic: "a", payload: "1", qos: 1 })
      const disconnecting = yield* client.disconnect({ drain: true }).pipe(Effect.forkScoped)
      yield* settle
      expect(disconnecting.pollUnsafe()).toBeUndefined()
      const publish = broker.received.find((p) => p.cmd === "publish")!
      broker.send({ cmd: "puback", messageId: publish.messageId! })
      yield* Fiber.join(disconnecting)
      yield* receipt.acknowledged
      expect(broker.received.at(-1)?.cmd).toBe("disconnect")
      expect((yield* Effect.flip(client.publish({ topic: "a", payload: "late" })))._tag).toBe("ClientClosed")
    }).pipe(Effect.scoped))

  it.effect("with drain and a timeout, what is still pending fails with ClientClosed", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make({ acknowledge: false })
      const client = yield* makeClient(broker)
      const receipt = yield* client.publish({ topic: "a", payload: "1", qos: 1 })
      const disconnecting = yield* client.disconnect({ drain: true, timeout: "3 seconds" }).pipe(Effect.forkScoped)
      yield* TestClock.adjust("3 seconds")
      yield* Fiber.join(disconnecting)
      expect(errorTag(yield* Effect.exit(receipt.acknowledged))).toBe("ClientClosed")
    }).pipe(Effect.scoped))

  it.effect("without drain, pending receipts fail with ClientClosed at once", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make({ acknowledge: false })
      const client = yield* makeClient(broker)
      const receipt = yield* client.publish({ topic: "a", payload: "1", qos: 1 })
      yield* settle
      yield* client.disconnect()
      expect(errorTag(yield* Effect.exit(receipt.acknowledged))).toBe("ClientClosed")
      expect(broker.received.at(-1)?.cmd).toBe("disconnect")
    }).pipe(Effect.scoped))
})
