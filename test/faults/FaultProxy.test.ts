/**
 * The fault harness itself: the proxy really delays, throttles, pauses,
 * black-holes, refuses and cuts (tested with our client over embedded aedes).
 */
import { describe, expect, it } from "@effect/vitest"
import { MqttMessage } from "@effect-mqtt/core"
import { FaultProxy } from "@effect-mqtt/node"
import { Effect, Stream } from "effect"
import { awaitConnected, awaitDisconnected, connect } from "../helpers/Clients.ts"
import { Aedes } from "../helpers/index.ts"
import { fastReconnect } from "./shared.ts"

const setup = Effect.gen(function*() {
  const broker = yield* Aedes.start()
  const proxy = yield* FaultProxy.start({ host: broker.host, port: broker.port })
  const client = yield* connect(proxy.url, { reconnect: fastReconnect })
  yield* awaitConnected(client)
  return { broker, proxy, client }
})

const timed = <A, E, R>(self: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const start = Date.now()
    yield* self
    return Date.now() - start
  })

describe("FaultProxy", () => {
  it.live("delay adds latency both ways", () =>
    Effect.gen(function*() {
      const { proxy, client } = yield* setup
      const fast = yield* timed(client.publishAndWait({ topic: "d", payload: "x", qos: 1 }))
      yield* proxy.delay("150 millis")
      const slow = yield* timed(client.publishAndWait({ topic: "d", payload: "x", qos: 1 }))
      expect(fast).toBeLessThan(100)
      expect(slow).toBeGreaterThanOrEqual(290) // PUBLISH out and PUBACK back, 150 ms each
    }).pipe(Effect.scoped, Effect.timeout("10 seconds")))

  it.live("throttle limits the bandwidth", () =>
    Effect.gen(function*() {
      const { proxy, client } = yield* setup
      yield* proxy.throttle(100_000)
      const millis = yield* timed(client.publishAndWait({ topic: "t", payload: new Uint8Array(100_000), qos: 1 }))
      expect(millis).toBeGreaterThanOrEqual(900)
      yield* proxy.throttle(undefined)
      const after = yield* timed(client.publishAndWait({ topic: "t", payload: new Uint8Array(100_000), qos: 1 }))
      expect(after).toBeLessThan(500)
    }).pipe(Effect.scoped, Effect.timeout("10 seconds")))

  it.live("pause holds bytes without losing them; resume delivers them", () =>
    Effect.gen(function*() {
      const { proxy, client } = yield* setup
      const messages = yield* client.subscribeScoped("p", { qos: 1 })
      yield* proxy.pause
      const receipt = yield* client.publish({ topic: "p", payload: "held", qos: 1 })
      const waited = yield* Effect.timeoutOption(receipt.acknowledged, "300 millis")
      expect(waited._tag).toBe("None")
      yield* proxy.resume
      yield* receipt.acknowledged
      const [message] = yield* messages.pipe(Stream.take(1), Stream.runCollect)
      expect(MqttMessage.text(message)).toBe("held")
    }).pipe(Effect.scoped, Effect.timeout("10 seconds")))

  it.live("refuse keeps the client out until restore; cut at a random byte drops the connection", () =>
    Effect.gen(function*() {
      const { proxy, client } = yield* setup
      yield* proxy.refuse
      yield* proxy.cut({ atRandomByte: true })
      yield* awaitDisconnected(client)
      yield* Effect.sleep("300 millis")
      expect((yield* client.stats).connected).toBe(false)
      yield* proxy.restore
      yield* awaitConnected(client)
      const stats = yield* proxy.stats
      expect(stats.connections).toBe(2)
      yield* client.publishAndWait({ topic: "back", payload: "x", qos: 1 })
    }).pipe(Effect.scoped, Effect.timeout("10 seconds")))

  it.live("several broker URLs: attempts rotate past one that is down", () =>
    Effect.gen(function*() {
      const broker = yield* Aedes.start()
      const dead = yield* FaultProxy.start({ host: broker.host, port: broker.port })
      yield* dead.refuse
      const client = yield* connect([dead.url, broker.url], { reconnect: fastReconnect })
      yield* awaitConnected(client)
      yield* client.publishAndWait({ topic: "failover", payload: "x", qos: 1 })
      expect((yield* client.stats).connections).toBe(1)
    }).pipe(Effect.scoped, Effect.timeout("10 seconds")))
})
