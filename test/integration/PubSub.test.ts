/**
 * The client against real brokers over TCP on 127.0.0.1: aedes (embedded,
 * MQTT 3.1.1) and mosquitto 2.0 (started per test file as a child process).
 */
import { describe, expect, it } from "@effect/vitest"
import { MqttMessage } from "@effect-mqtt/core"
import { Effect, Fiber, Stream } from "effect"
import { awaitConnected, connect, connectAbortable } from "../helpers/Clients.ts"
import { Aedes, Mosquitto, requireBroker } from "../helpers/index.ts"

const brokers = [
  { name: "aedes", start: Aedes.start() },
  { name: "mosquitto", start: Mosquitto.start().pipe(requireBroker) }
] as const

const bounded = <A, E, R>(self: Effect.Effect<A, E, R>) => self.pipe(Effect.timeout("10 seconds"))

for (const broker of brokers) {
  describe(`against ${broker.name}`, () => {
    it.live("publishes and receives at QoS 0, 1 and 2", () =>
      Effect.gen(function*() {
        const { url } = yield* broker.start
        const subscriber = yield* connect(url)
        const publisher = yield* connect(url)
        const messages = yield* subscriber.subscribeScoped("it/qos/+", { qos: 2 })
        for (const qos of [0, 1, 2] as const) {
          yield* publisher.publishAndWait({ topic: `it/qos/${qos}`, payload: `payload ${qos}`, qos })
        }
        const received = yield* messages.pipe(Stream.take(3), Stream.runCollect)
        expect(received.map((m) => [m.topic, MqttMessage.text(m), m.qos])).toEqual([
          ["it/qos/0", "payload 0", 0],
          ["it/qos/1", "payload 1", 1],
          ["it/qos/2", "payload 2", 2]
        ])
        const stats = yield* publisher.stats
        expect(stats.sent).toBe(3)
        expect(stats.inflight).toBe(0)
      }).pipe(Effect.scoped, bounded))

    it.live("overlapping subscriptions each receive every matching message", () =>
      Effect.gen(function*() {
        const { url } = yield* broker.start
        const client = yield* connect(url)
        const all = yield* client.subscribeScoped("ov/#", { qos: 1 })
        const one = yield* client.subscribeScoped("ov/+/b", { qos: 1 })
        yield* client.publishAndWait({ topic: "ov/a/b", payload: "1", qos: 1 })
        yield* client.publishAndWait({ topic: "ov/a/c", payload: "2", qos: 1 })
        const fromAll = yield* all.pipe(Stream.take(2), Stream.runCollect)
        const fromOne = yield* one.pipe(Stream.take(1), Stream.runCollect)
        expect(fromAll.map((m) => m.topic)).toEqual(["ov/a/b", "ov/a/c"])
        expect(fromOne.map((m) => m.topic)).toEqual(["ov/a/b"])
      }).pipe(Effect.scoped, bounded))

    it.live("a retained message reaches a later subscriber with the retain flag", () =>
      Effect.gen(function*() {
        const { url } = yield* broker.start
        const publisher = yield* connect(url)
        yield* publisher.publishAndWait({ topic: "it/retained", payload: "kept", qos: 1, retain: true })
        const subscriber = yield* connect(url)
        const [message] = yield* subscriber.subscribe("it/retained", { qos: 1 }).pipe(Stream.take(1), Stream.runCollect)
        expect(MqttMessage.text(message)).toBe("kept")
        expect(message.retain).toBe(true)
      }).pipe(Effect.scoped, bounded))

    it.live("the will is published when a client disappears without DISCONNECT", () =>
      Effect.gen(function*() {
        const started = yield* broker.start
        const watcher = yield* connect(started.url)
        const wills = yield* watcher.subscribeScoped("it/will/#", { qos: 1 })
        const { abort, client } = yield* connectAbortable(started.port, {
          clientId: "will-owner",
          reconnect: false,
          will: { topic: "it/will/owner", payload: "owner vanished", qos: 1 }
        })
        yield* awaitConnected(client)
        yield* abort
        const [will] = yield* wills.pipe(Stream.take(1), Stream.runCollect)
        expect(will.topic).toBe("it/will/owner")
        expect(MqttMessage.text(will)).toBe("owner vanished")
      }).pipe(Effect.scoped, bounded))

    it.live("a clean DISCONNECT (closing the scope) does not publish the will", () =>
      Effect.gen(function*() {
        const { url } = yield* broker.start
        const watcher = yield* connect(url)
        const wills = yield* watcher.subscribeScoped("it/nowill/#", { qos: 1 })
        yield* Effect.scoped(Effect.gen(function*() {
          const client = yield* connect(url, { will: { topic: "it/nowill/x", payload: "unexpected", qos: 1 } })
          yield* client.publishAndWait({ topic: "it/nowill/alive", payload: "alive", qos: 1 })
        }))
        yield* watcher.publishAndWait({ topic: "it/nowill/end", payload: "end", qos: 1 })
        const got = yield* wills.pipe(Stream.take(2), Stream.runCollect)
        expect(got.map((m) => m.topic)).toEqual(["it/nowill/alive", "it/nowill/end"])
      }).pipe(Effect.scoped, bounded))

    it.live("unsubscribes when the stream ends", () =>
      Effect.gen(function*() {
        const { url } = yield* broker.start
        const client = yield* connect(url)
        yield* Effect.scoped(client.subscribeScoped("it/unsub", { qos: 1 }))
        const other = yield* client.subscribeScoped("it/unsub2", { qos: 1 })
        yield* client.publishAndWait({ topic: "it/unsub", payload: "nobody listens", qos: 1 })
        yield* client.publishAndWait({ topic: "it/unsub2", payload: "x", qos: 1 })
        yield* other.pipe(Stream.take(1), Stream.runCollect)
        expect((yield* client.stats).received).toBe(1)
      }).pipe(Effect.scoped, bounded))
  })
}

describe("against mosquitto only", () => {
  it.live("keep-alive: a broker that stops answering (SIGSTOP) is detected and the client reconnects", () =>
    Effect.gen(function*() {
      const broker = yield* Mosquitto.start().pipe(requireBroker)
      const client = yield* connect(broker.url, { keepAlive: 1 })
      yield* awaitConnected(client)
      const disconnected = yield* client.events.pipe(
        Stream.filter((event) => event._tag === "Disconnected"),
        Stream.take(1),
        Stream.runCollect,
        Effect.forkScoped
      )
      yield* Effect.sleep("50 millis") // the events subscription is in place
      yield* broker.kill("SIGSTOP")
      const start = Date.now()
      const [event] = yield* Fiber.join(disconnected)
      const detectedAfter = Date.now() - start
      yield* broker.kill("SIGCONT")
      expect(event._tag === "Disconnected" && event.cause._tag).toBe("ConnectionLost")
      // keepAlive 1 s: PINGREQ after 1 s of silence, dead when no PINGRESP within 0.5 s
      expect(detectedAfter).toBeLessThan(2_000)
      yield* awaitConnected(client)
      yield* client.publishAndWait({ topic: "ka/after", payload: "back", qos: 1 })
      expect((yield* client.stats).connections).toBe(2)
    }).pipe(Effect.scoped, bounded))

  it.live("MQTT 5: connect and publish with user properties", () =>
    Effect.gen(function*() {
      const { url } = yield* Mosquitto.start().pipe(requireBroker)
      const subscriber = yield* connect(url, { protocolVersion: 5 })
      const publisher = yield* connect(url, { protocolVersion: 5, properties: { userProperties: { app: "it" } } })
      const messages = yield* subscriber.subscribeScoped("v5/props", { qos: 1 })
      yield* publisher.publishAndWait({
        topic: "v5/props",
        payload: "with properties",
        qos: 1,
        properties: { userProperties: { trace: "abc", tags: ["a", "b"] }, contentType: "text/plain" }
      })
      const [message] = yield* messages.pipe(Stream.take(1), Stream.runCollect)
      expect(MqttMessage.text(message)).toBe("with properties")
      expect(message.properties?.userProperties).toEqual({ trace: "abc", tags: ["a", "b"] })
      expect(message.properties?.contentType).toBe("text/plain")
    }).pipe(Effect.scoped, bounded))
})
