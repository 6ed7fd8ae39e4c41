/**
 * Fault tests 4 and 6: a black-holed link is detected by keep-alive and
 * replaced; after a reconnect without a session, subscriptions come back by
 * themselves.
 */
import { describe, expect, it } from "@effect/vitest"
import { MqttMessage } from "@effect-mqtt/core"
import { FaultProxy } from "@effect-mqtt/node"
import { Effect, Fiber, Stream } from "effect"
import { awaitConnected, connect } from "../helpers/Clients.ts"
import { Mosquitto, requireBroker } from "../helpers/index.ts"
import { fastReconnect, report } from "./shared.ts"

describe("link faults", () => {
  it.live("a black-holed link is detected within 1.5 x keepAlive, replaced, and traffic resumes", () =>
    Effect.gen(function*() {
      const broker = yield* Mosquitto.start().pipe(requireBroker)
      const proxy = yield* FaultProxy.start({ host: broker.host, port: broker.port })
      const keepAliveSeconds = 2
      const client = yield* connect(proxy.url, { keepAlive: keepAliveSeconds, reconnect: fastReconnect })
      yield* awaitConnected(client)
      const messages = yield* client.subscribeScoped("bh/#", { qos: 1 })
      yield* client.publishAndWait({ topic: "bh/before", payload: "before", qos: 1 })
      const disconnected = yield* client.events.pipe(
        Stream.filter((event) => event._tag === "Disconnected"),
        Stream.take(1),
        Stream.runCollect,
        Effect.forkScoped
      )
      yield* Effect.sleep("20 millis")
      yield* proxy.blackHole
      const start = Date.now()
      // a publish into the black hole: its PUBACK never comes on this connection
      const during = yield* client.publish({ topic: "bh/during", payload: "during", qos: 1 })
      const [event] = yield* Fiber.join(disconnected)
      const detectedMillis = Date.now() - start
      yield* during.acknowledged // resent on the new connection
      yield* client.publishAndWait({ topic: "bh/after", payload: "after", qos: 1 })
      const got = yield* messages.pipe(Stream.take(3), Stream.runCollect)
      yield* report("black hole", { keepAliveSeconds, detectedMillis, limitMillis: 1500 * keepAliveSeconds })
      expect(event._tag === "Disconnected" && event.cause._tag).toBe("ConnectionLost")
      expect(detectedMillis).toBeLessThanOrEqual(1500 * keepAliveSeconds + 250)
      expect(got.map((m) => MqttMessage.text(m))).toEqual(["before", "during", "after"])
    }).pipe(Effect.scoped, Effect.timeout("20 seconds")))

  it.live("after a reconnect without a session, subscriptions are restored and new messages arrive", () =>
    Effect.gen(function*() {
      const broker = yield* Mosquitto.start().pipe(requireBroker)
      const proxy = yield* FaultProxy.start({ host: broker.host, port: broker.port })
      const subscriber = yield* connect(proxy.url, { cleanSession: true, reconnect: fastReconnect })
      const publisher = yield* connect(broker.url)
      const messages = yield* subscriber.subscribeScoped(["clean/a", "clean/b/+"], { qos: 1 })
      yield* publisher.publishAndWait({ topic: "clean/a", payload: "1", qos: 1 })
      const before = yield* messages.pipe(Stream.take(1), Stream.runCollect)
      yield* proxy.cut()
      yield* Effect.sleep("50 millis")
      yield* awaitConnected(subscriber)
      const resubscribed = (yield* subscriber.stats).connections
      // The restored SUBSCRIBE precedes anything else on the new connection, so once our own
      // probe comes back, the broker has the subscription for the other publisher's messages too.
      yield* subscriber.publishAndWait({ topic: "clean/a", payload: "probe", qos: 1 })
      const probe = yield* messages.pipe(Stream.take(1), Stream.runCollect, Effect.timeout("5 seconds"))
      yield* publisher.publishAndWait({ topic: "clean/a", payload: "2", qos: 1 })
      yield* publisher.publishAndWait({ topic: "clean/b/x", payload: "3", qos: 1 })
      const after = yield* messages.pipe(Stream.take(2), Stream.runCollect, Effect.timeout("5 seconds"))
      expect(resubscribed).toBe(2)
      expect([...before, ...probe, ...after].map((m) => MqttMessage.text(m))).toEqual(["1", "probe", "2", "3"])
    }).pipe(Effect.scoped, Effect.timeout("20 seconds")))
})
