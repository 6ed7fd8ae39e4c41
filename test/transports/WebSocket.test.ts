/**
 * MQTT over WebSocket: against mosquitto 2.0's websockets listeners, plain
 * (ws://) and secure (wss://), and through a WebSocket-to-TCP bridge that cuts
 * the broker's bytes into random frames (packets spanning frames, packets
 * sharing a frame) and records the handshake.
 *
 * mosquitto 2.0.11 (libwebsockets) sends a large message to a WebSocket
 * subscriber slowly: about 4 KiB per 100 ms (1 MiB takes ~25 s, measured). So
 * the 1 MiB payloads go client → mosquitto over WebSocket (fast) and
 * mosquitto → client over TCP, and the bridge carries 1 MiB to a WebSocket
 * subscriber both ways.
 */
import { describe, expect, it } from "@effect/vitest"
import { MqttMessage } from "@effect-mqtt/core"
import { NodeMqttClient } from "@effect-mqtt/node"
import { Effect, Redacted, Stream } from "effect"
import * as WsBridge from "../helpers/WsBridge.ts"
import { awaitDisconnects, bounded, causes, recordEvents, roundTrip, startBroker } from "./shared.ts"

const MiB = 1024 * 1024

describe("WebSocket against mosquitto (`protocol websockets`)", () => {
  for (const version of [4, 5] as const) {
    it.live(`ws://: QoS 0/1/2 both ways over WebSocket, and a 1 MiB publish (MQTT ${version === 4 ? "3.1.1" : "5"})`, () =>
      Effect.gen(function*() {
        const { mqttUrl, wsUrl } = yield* startBroker()
        const subscriber = yield* NodeMqttClient.make({ url: wsUrl, protocolVersion: version })
        const publisher = yield* NodeMqttClient.make({ url: `${wsUrl}/mqtt`, protocolVersion: version })
        yield* roundTrip(subscriber, publisher, `ws/v${version}`)
        const overTcp = yield* NodeMqttClient.make({ url: mqttUrl, protocolVersion: version })
        yield* roundTrip(overTcp, publisher, `ws/v${version}/big`, MiB)
      }).pipe(Effect.scoped, bounded))
  }

  it.live("ws://: a 64 KiB message reaches a WebSocket subscriber (mosquitto sends it in many pieces)", () =>
    Effect.gen(function*() {
      const { mqttUrl, wsUrl } = yield* startBroker()
      const subscriber = yield* NodeMqttClient.make({ url: wsUrl })
      const messages = yield* subscriber.subscribeScoped("ws/64k", { qos: 1 })
      const publisher = yield* NodeMqttClient.make({ url: mqttUrl })
      const payload = new Uint8Array(64 * 1024).map((_, i) => i & 0xff)
      yield* publisher.publishAndWait({ topic: "ws/64k", payload, qos: 1 })
      const [message] = yield* messages.pipe(Stream.take(1), Stream.runCollect)
      expect(Buffer.from(message.payload).equals(Buffer.from(payload))).toBe(true)
    }).pipe(Effect.scoped, bounded))

  it.live("wss://: QoS 0/1/2 both ways, a 1 MiB publish, with extra handshake headers", () =>
    Effect.gen(function*() {
      const { certs, mqttUrl, wssUrl } = yield* startBroker()
      const ca = certs.read(certs.caCert)
      const subscriber = yield* NodeMqttClient.make({ url: wssUrl, ca })
      const publisher = yield* NodeMqttClient.make({
        url: wssUrl,
        ca,
        headers: { "X-Client": "effect-mqtt-test", Authorization: Redacted.make("Bearer not-checked-by-mosquitto") }
      })
      yield* roundTrip(subscriber, publisher, "wss")
      const overTcp = yield* NodeMqttClient.make({ url: mqttUrl })
      yield* roundTrip(overTcp, publisher, "wss/big", MiB)
    }).pipe(Effect.scoped, bounded))

  it.live("wss:// with a client certificate and servername localhost; messages cross to and from TCP", () =>
    Effect.gen(function*() {
      const { certs, mqttUrl, wssUrl } = yield* startBroker()
      const overWss = yield* NodeMqttClient.make({
        url: wssUrl,
        ca: certs.read(certs.caCert),
        cert: certs.read(certs.clientCert),
        key: Redacted.make(certs.read(certs.clientKey)),
        servername: "localhost"
      })
      const overTcp = yield* NodeMqttClient.make({ url: mqttUrl })
      yield* roundTrip(overTcp, overWss, "cross/a")
      yield* roundTrip(overWss, overTcp, "cross/b")
    }).pipe(Effect.scoped, bounded))

  it.live("wss:// with an untrusted CA fails with TlsError UnknownCA", () =>
    Effect.gen(function*() {
      const { certs, wssUrl } = yield* startBroker()
      const client = yield* NodeMqttClient.make({ url: wssUrl, ca: certs.read(certs.otherCaCert), reconnect: false })
      const events = yield* recordEvents(client)
      yield* awaitDisconnects(events, 1)
      const [cause] = causes(events)
      expect(cause._tag === "TlsError" && cause.kind).toBe("UnknownCA")
    }).pipe(Effect.scoped, bounded))

  it.live("wss:// with a wrong servername fails with TlsError HostnameMismatch", () =>
    Effect.gen(function*() {
      const { certs, wssUrl } = yield* startBroker()
      const client = yield* NodeMqttClient.make({
        url: wssUrl,
        ca: certs.read(certs.caCert),
        servername: "broker.example.com",
        reconnect: false
      })
      const events = yield* recordEvents(client)
      yield* awaitDisconnects(events, 1)
      const [cause] = causes(events)
      expect(cause._tag === "TlsError" && cause.kind).toBe("HostnameMismatch")
    }).pipe(Effect.scoped, bounded))

  it.live("ws:// to a port that is not a WebSocket server: ConnectionLost saying the handshake failed", () =>
    Effect.gen(function*() {
      const { mqttUrl } = yield* startBroker()
      const client = yield* NodeMqttClient.make({ url: mqttUrl.replace("mqtt:", "ws:"), reconnect: false })
      const events = yield* recordEvents(client)
      yield* awaitDisconnects(events, 1)
      const [cause] = causes(events)
      expect(cause._tag).toBe("ConnectionLost")
      expect(cause.message).toContain("cannot open the connection")
    }).pipe(Effect.scoped, bounded))
})

describe("WebSocket framing (through a re-framing bridge to mosquitto)", () => {
  it.live("packets spanning frames and sharing frames are decoded: QoS 0/1/2 and 1 MiB both ways", () =>
    Effect.gen(function*() {
      const { broker } = yield* startBroker()
      const bridge = yield* WsBridge.start(broker.port, { seed: 7, maxFrame: 3000 })
      const subscriber = yield* NodeMqttClient.make({ url: bridge.url, protocolVersion: 5 })
      const publisher = yield* NodeMqttClient.make({ url: `${bridge.url}/custom/path?token=abc`, protocolVersion: 5 })
      yield* roundTrip(subscriber, publisher, "bridge", MiB)
      // A burst of small messages: many packets per tick, so frames carry several of them.
      const messages = yield* subscriber.subscribeScoped("burst/#", { qos: 1 })
      yield* Effect.forEach(
        Array.from({ length: 200 }, (_, i) => i),
        (i) => publisher.publish({ topic: `burst/${i}`, payload: `m${i}`, qos: 1 }),
        { discard: true }
      )
      const burst = yield* messages.pipe(Stream.take(200), Stream.runCollect)
      expect(burst.map(MqttMessage.text)).toEqual(Array.from({ length: 200 }, (_, i) => `m${i}`))

      const framing = bridge.framing()
      expect(framing.spanning).toBeGreaterThan(10)
      expect(framing.sharing).toBeGreaterThan(10)
      expect(bridge.textFramesFromClient()).toBe(0)
      // The handshakes: subprotocol mqtt, the default path /mqtt, and the path and query as written.
      expect(bridge.handshakes.map((h) => [h.path, h.protocol])).toEqual([
        ["/mqtt", "mqtt"],
        ["/custom/path?token=abc", "mqtt"]
      ])
    }).pipe(Effect.scoped, bounded))

  it.live("extra headers reach the handshake (Redacted values in clear on the wire only); user info does not", () =>
    Effect.gen(function*() {
      const { broker } = yield* startBroker()
      const bridge = yield* WsBridge.start(broker.port)
      const client = yield* NodeMqttClient.make({
        url: bridge.url.replace("ws://", "ws://user:pass@") + "/?keepAlive=30",
        headers: { "X-Tenant": "acme", Authorization: Redacted.make("Bearer t0ken") }
      })
      yield* client.publishAndWait({ topic: "headers", payload: "x", qos: 1 })
      const [handshake] = bridge.handshakes
      expect(handshake.headers["x-tenant"]).toBe("acme")
      expect(handshake.headers.authorization).toBe("Bearer t0ken")
      expect(handshake.path).toBe("/") // written explicitly; client options are taken out of the query
      expect(handshake.protocols).toEqual(["mqtt"])
    }).pipe(Effect.scoped, bounded))
})
