/**
 * MQTT 5 behaviour that mosquitto cannot show (it never sends topic aliases,
 * AUTH challenges, malformed properties…), against a scripted broker.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, Logger, References, Stream } from "effect"
import * as TestClock from "effect/testing/TestClock"
import { MqttClient, MqttMessage } from "../src/index.ts"
import * as FakeBroker from "./utils/FakeBroker.ts"
import { makeClient, recordEvents, settle } from "./utils/TestClient.ts"

const v5 = { protocolVersion: 5 } as const

const publishes = (broker: FakeBroker.FakeBroker) =>
  broker.received.flatMap((p) => (p.cmd === "publish" ? [p] : []))

const sent = (broker: FakeBroker.FakeBroker, cmd: string) => broker.received.filter((p) => p.cmd === cmd)

describe("enhanced authentication", () => {
  it.effect("answers AUTH challenges during CONNECT and on re-authentication", () =>
    Effect.gen(function*() {
      const answers: Array<string> = []
      const broker = yield* FakeBroker.make({
        protocolVersion: 5,
        script: (packet, b) => {
          if (packet.cmd === "connect") {
            expect(packet.properties?.authenticationMethod).toBe("SCRAM-TEST")
            expect(packet.properties?.authenticationData?.toString()).toBe("client-first")
            b.send({ cmd: "auth", reasonCode: 0x18, properties: { authenticationMethod: "SCRAM-TEST", authenticationData: Buffer.from("challenge-1") } })
            return true
          }
          if (packet.cmd === "auth") {
            const data = packet.properties?.authenticationData?.toString()
            if (packet.reasonCode === 0x19) {
              b.send({ cmd: "auth", reasonCode: 0x18, properties: { authenticationMethod: "SCRAM-TEST", authenticationData: Buffer.from("challenge-2") } })
            } else if (data === "proof:challenge-1") {
              b.send({ cmd: "connack", reasonCode: 0, sessionPresent: false })
            } else if (data === "proof:challenge-2") {
              b.send({ cmd: "auth", reasonCode: 0x00, properties: { authenticationMethod: "SCRAM-TEST" } })
            }
            return true
          }
          return false
        }
      })
      const client = yield* makeClient(broker, {
        ...v5,
        authenticate: {
          method: "SCRAM-TEST",
          data: Buffer.from("client-first"),
          respond: (challenge) =>
            Effect.sync(() => {
              const text = Buffer.from(challenge ?? []).toString()
              answers.push(text)
              return Buffer.from(`proof:${text}`)
            })
        }
      })
      yield* settle
      expect((yield* client.stats).connected).toBe(true)
      yield* client.reauthenticate
      expect(answers).toEqual(["challenge-1", "challenge-2"])
      expect(sent(broker, "auth").map((p) => p.cmd === "auth" && p.reasonCode)).toEqual([0x18, 0x19, 0x18])
    }).pipe(Effect.scoped))

  it.effect("a failing authenticate handler is AuthenticationFailed", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make({
        protocolVersion: 5,
        script: (packet, b) => {
          if (packet.cmd !== "connect") return false
          b.send({ cmd: "auth", reasonCode: 0x18, properties: { authenticationMethod: "M" } })
          return true
        }
      })
      const client = yield* makeClient(broker, {
        ...v5,
        authenticate: { method: "M", respond: () => Effect.fail("no key") }
      })
      const events = yield* recordEvents(client)
      yield* TestClock.adjust("1 second")
      const disconnected = events.find((event) => event._tag === "Disconnected")
      expect(disconnected?._tag === "Disconnected" && disconnected.cause._tag).toBe("AuthenticationFailed")
    }).pipe(Effect.scoped))
})

describe("topic aliases", () => {
  it.effect("incoming aliases are resolved; an unknown alias is DISCONNECT 0x94", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make({ protocolVersion: 5 })
      const client = yield* makeClient(broker, { ...v5, properties: { topicAliasMaximum: 4 } })
      const messages = yield* client.subscribeScoped("sensors/#", { qos: 0 })
      const got = yield* messages.pipe(Stream.take(2), Stream.runCollect, Effect.forkScoped)
      const publish = (topic: string, alias: number, payload: string) =>
        broker.send({ cmd: "publish", topic, payload: Buffer.from(payload), qos: 0, dup: false, retain: false, properties: { topicAlias: alias } })
      publish("sensors/kitchen", 1, "a")
      publish("", 1, "b")
      expect((yield* Fiber.join(got)).map((m) => [m.topic, MqttMessage.text(m)])).toEqual([
        ["sensors/kitchen", "a"],
        ["sensors/kitchen", "b"]
      ])
      publish("", 3, "unknown")
      yield* settle
      const disconnect = sent(broker, "disconnect")
      expect(disconnect.map((p) => p.cmd === "disconnect" && p.reasonCode)).toEqual([0x94])
    }).pipe(Effect.scoped))

  it.effect("outgoing aliases are assigned least-recently-used within the broker's maximum", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make({ protocolVersion: 5, connackProperties: { topicAliasMaximum: 2 } })
      const client = yield* makeClient(broker, { ...v5, topicAliases: true })
      for (const topic of ["a", "a", "b", "a", "c", "b"]) yield* client.publishAndWait({ topic, payload: "x", qos: 1 })
      const wire = publishes(broker).map((p) => `${p.topic || "-"}:${p.properties?.topicAlias}`)
      // a->1, b->2; "c" evicts the least recently used ("b"), so "b" needs a new alias again
      expect(wire).toEqual(["a:1", "-:1", "b:2", "-:1", "c:2", "b:1"])
    }).pipe(Effect.scoped))

  it.effect("a publish sent with an alias carries the payload as it was when the publish ran", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make({ protocolVersion: 5, connackProperties: { topicAliasMaximum: 2 } })
      broker.gate.closeUnsafe()
      const client = yield* makeClient(broker, { ...v5, topicAliases: true })
      const buffer = new Uint8Array([1, 2, 3])
      const receipts = [
        yield* client.publish({ topic: "t", payload: buffer, qos: 1 }),
        yield* client.publish({ topic: "t", payload: "text é", qos: 0 }),
        yield* client.publish({ topic: "t", payload: new Uint8Array(0), qos: 2 })
      ]
      buffer.fill(9) // the caller reuses its buffer while the message is still queued
      broker.gate.openUnsafe()
      yield* Effect.forEach(receipts, (receipt) => receipt.acknowledged, { discard: true })
      const wire = publishes(broker).map((p) => [p.topic || "-", p.properties?.topicAlias, [...Buffer.from(p.payload)]])
      expect(wire).toEqual([["t", 1, [1, 2, 3]], ["-", 1, [...Buffer.from("text é")]], ["-", 1, []]])
    }).pipe(Effect.scoped))
})

describe("flow control and limits", () => {
  it.effect("a broker exceeding our Receive Maximum gets DISCONNECT 0x93", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make({ protocolVersion: 5 })
      const client = yield* makeClient(broker, { ...v5, properties: { receiveMaximum: 2 } })
      yield* client.subscribeScoped("in", { qos: 1, bufferSize: 1 }) // never read: PUBACKs wait
      // 1 is buffered and acknowledged; 2 and 3 wait unacknowledged (2 = our maximum); 4 is one too many
      for (let id = 1; id <= 4; id++) {
        broker.send({ cmd: "publish", topic: "in", payload: Buffer.from("x"), qos: 1, messageId: id, dup: false, retain: false })
      }
      yield* settle
      expect(sent(broker, "disconnect").map((p) => p.cmd === "disconnect" && p.reasonCode)).toEqual([0x93])
    }).pipe(Effect.scoped))

  it.effect("an incoming packet over our Maximum Packet Size gets DISCONNECT 0x95", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make({ protocolVersion: 5 })
      const client = yield* makeClient(broker, { ...v5, properties: { maximumPacketSize: 100 } })
      yield* client.subscribeScoped("in", { qos: 0 })
      broker.send({ cmd: "publish", topic: "in", payload: Buffer.alloc(200), qos: 0, dup: false, retain: false })
      yield* settle
      expect(sent(broker, "disconnect").map((p) => p.cmd === "disconnect" && p.reasonCode)).toEqual([0x95])
    }).pipe(Effect.scoped))

  it.effect("a publish over the broker's Maximum Packet Size fails with PacketTooLarge; the rest of the batch goes", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make({ protocolVersion: 5, connackProperties: { maximumPacketSize: 200 } })
      broker.gate.closeUnsafe()
      const client = yield* makeClient(broker, v5)
      const small1 = yield* client.publish({ topic: "t", payload: "small", qos: 1 })
      const big = yield* client.publish({ topic: "t", payload: new Uint8Array(500), qos: 1 })
      const small2 = yield* client.publish({ topic: "t", payload: "small", qos: 1 })
      broker.gate.openUnsafe()
      yield* small1.acknowledged
      yield* small2.acknowledged
      const error = yield* Effect.flip(big.acknowledged)
      expect(error._tag).toBe("PacketTooLarge")
      expect(publishes(broker)).toHaveLength(2)
    }).pipe(Effect.scoped))

  it.effect("a payload flagged as UTF-8 that is not is refused with reason 0x99 and not delivered", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make({ protocolVersion: 5 })
      const client = yield* makeClient(broker, v5)
      const messages = yield* client.subscribeScoped("in", { qos: 1 })
      const got = yield* messages.pipe(Stream.take(1), Stream.runCollect, Effect.forkScoped)
      const publish = (id: number, payload: Buffer) =>
        broker.send({ cmd: "publish", topic: "in", payload, qos: 1, messageId: id, dup: false, retain: false, properties: { payloadFormatIndicator: true } })
      publish(1, Buffer.from([0xff, 0xfe]))
      publish(2, Buffer.from("valid ✓"))
      expect((yield* Fiber.join(got)).map(MqttMessage.text)).toEqual(["valid ✓"])
      yield* settle
      expect(sent(broker, "puback").map((p) => p.cmd === "puback" && [p.messageId, p.reasonCode ?? 0])).toEqual([[1, 0x99], [2, 0]])
      expect((yield* client.stats).droppedIncoming).toBe(1)
    }).pipe(Effect.scoped))
})

describe("server properties", () => {
  it.effect("Server Keep Alive replaces ours; an assigned client identifier is used", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make({
        protocolVersion: 5,
        connackProperties: { serverKeepAlive: 5, assignedClientIdentifier: "assigned-7" }
      })
      const client = yield* makeClient(broker, { ...v5, clientId: "", keepAlive: 60 })
      yield* settle
      const stats = yield* client.stats
      expect(stats.clientId).toBe("assigned-7")
      expect(stats.server.serverKeepAlive).toBe(5)
      yield* TestClock.adjust("5 seconds")
      yield* settle
      expect(sent(broker, "pingreq")).toHaveLength(1)
    }).pipe(Effect.scoped))

  it.effect("with subscription identifiers, messages are routed by identifier, not by filter", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make({ protocolVersion: 5 })
      const client = yield* makeClient(broker, v5)
      const wide = yield* client.subscribeScoped("a/#", { qos: 0 })
      const narrow = yield* client.subscribeScoped("a/b", { qos: 0 })
      const ids = sent(broker, "subscribe").map((p) => p.cmd === "subscribe" ? p.properties?.subscriptionIdentifier : undefined)
      expect(ids).toEqual([1, 2])
      // the broker says only the wide subscription matched (e.g. a no-local or a since-replaced one)
      broker.send({ cmd: "publish", topic: "a/b", payload: Buffer.from("1"), qos: 0, dup: false, retain: false, properties: { subscriptionIdentifier: 1 } })
      broker.send({ cmd: "publish", topic: "a/b", payload: Buffer.from("2"), qos: 0, dup: false, retain: false, properties: { subscriptionIdentifier: [1, 2] } })
      expect((yield* wide.pipe(Stream.take(2), Stream.runCollect)).map(MqttMessage.text)).toEqual(["1", "2"])
      expect((yield* narrow.pipe(Stream.take(1), Stream.runCollect)).map(MqttMessage.text)).toEqual(["2"])
    }).pipe(Effect.scoped))
})

describe("server DISCONNECT", () => {
  it.effect("a DISCONNECT with a reconnectable code is a ServerDisconnect, then the client reconnects", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make({ protocolVersion: 5 })
      const client = yield* makeClient(broker, v5)
      const events = yield* recordEvents(client)
      broker.send({ cmd: "disconnect", reasonCode: 0x8b, properties: { reasonString: "maintenance" } })
      yield* TestClock.adjust("1 second")
      const disconnected = events.find((event) => event._tag === "Disconnected")
      expect(disconnected?._tag === "Disconnected" && disconnected.cause._tag).toBe("ServerDisconnect")
      if (disconnected?._tag === "Disconnected" && disconnected.cause._tag === "ServerDisconnect") {
        expect(disconnected.cause.reasonName).toBe("ServerShuttingDown")
        expect(disconnected.cause.message).toContain("maintenance")
      }
      expect(broker.connections.count).toBe(2)
    }).pipe(Effect.scoped))

  it.effect("Not Authorized stops the client; pending work fails with the ServerDisconnect", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make({ protocolVersion: 5, acknowledge: false })
      const client = yield* makeClient(broker, v5)
      const receipt = yield* client.publish({ topic: "t", payload: "x", qos: 1 })
      yield* settle
      broker.send({ cmd: "disconnect", reasonCode: 0x87 })
      const error = yield* Effect.flip(receipt.acknowledged)
      expect(error._tag).toBe("ServerDisconnect")
      yield* TestClock.adjust("1 minute")
      expect(broker.connections.count).toBe(1)
    }).pipe(Effect.scoped))

  it.effect("Use Another Server with a Server Reference: the next attempt goes there", () =>
    Effect.gen(function*() {
      const first = yield* FakeBroker.make({ protocolVersion: 5 })
      const other = yield* FakeBroker.make({ protocolVersion: 5 })
      const references: Array<string> = []
      const client = yield* MqttClient.makeWithSockets(v5, [first.socket], {
        redirect: (reference) =>
          Effect.sync(() => {
            references.push(reference)
            return other.socket
          })
      })
      yield* settle
      first.send({ cmd: "disconnect", reasonCode: 0x9c, properties: { serverReference: "other.example:1883" } })
      yield* TestClock.adjust("1 second")
      expect(references).toEqual(["other.example:1883"])
      expect(other.connections.count).toBe(1)
      yield* client.publishAndWait({ topic: "t", payload: "x", qos: 1 })
    }).pipe(Effect.scoped))

  it.effect("disconnect sends our reason code and session expiry (MQTT 5)", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make({ protocolVersion: 5 })
      const client = yield* makeClient(broker, v5)
      yield* settle
      yield* client.disconnect({ reasonCode: 0x04, sessionExpiryInterval: 30 })
      const last = broker.received.at(-1)
      expect(last?.cmd === "disconnect" && [last.reasonCode, last.properties?.sessionExpiryInterval]).toEqual([0x04, 30])
    }).pipe(Effect.scoped))
})

describe("request/response", () => {
  it.effect("request publishes with a response topic and correlation data and gets the matching reply", () =>
    Effect.gen(function*() {
      const broker = yield* FakeBroker.make({
        protocolVersion: 5,
        script: (packet, b) => {
          if (packet.cmd !== "publish" || packet.topic !== "svc/echo") return false
          b.send({ cmd: "puback", messageId: packet.messageId! })
          // a reply with another correlation first (must be ignored), then the right one
          const reply = (correlationData: Buffer, payload: string) =>
            b.send({ cmd: "publish", topic: packet.properties!.responseTopic!, payload: Buffer.from(payload), qos: 0, dup: false, retain: false, properties: { correlationData } })
          reply(Buffer.from("other"), "not yours")
          reply(packet.properties!.correlationData!, `echo:${packet.payload.toString()}`)
          return true
        }
      })
      const client = yield* makeClient(broker, { ...v5, clientId: "req-1" })
      const response = yield* client.request({ topic: "svc/echo", payload: "hi" })
      expect(MqttMessage.text(response)).toBe("echo:hi")
      const request = publishes(broker).find((p) => p.topic === "svc/echo")!
      expect(request.properties?.responseTopic).toBe("effect-mqtt/responses/req-1")
      expect(request.properties?.correlationData?.length).toBe(16)
      const timeout = yield* client.request({ topic: "svc/silent", payload: "?", timeout: "1 second" }).pipe(
        Effect.flip,
        Effect.forkScoped
      )
      yield* TestClock.adjust("1 second")
      expect((yield* Fiber.join(timeout))._tag).toBe("RequestTimeout")
    }).pipe(Effect.scoped))
})


describe("unsubscribe", () => {
  it.effect("an UNSUBACK failure code is logged as a warning (ending a stream has no operation to fail)", () =>
    Effect.gen(function*() {
      const logged: Array<string> = []
      const capture = Logger.make(({ message }) => {
        logged.push(Array.isArray(message) ? message.join(" ") : String(message))
      })
      const broker = yield* FakeBroker.make({
        protocolVersion: 5,
        script: (packet, b) => {
          if (packet.cmd !== "unsubscribe") return false
          b.send({ cmd: "unsuback", messageId: packet.messageId!, granted: [0x87] })
          return true
        }
      })
      yield* Effect.gen(function*() {
        const client = yield* makeClient(broker, v5)
        yield* Effect.scoped(client.subscribeScoped("private/#", { qos: 1 }))
        yield* settle
        yield* settle
      }).pipe(Effect.scoped, Effect.provideService(References.CurrentLoggers, new Set([capture])))
      expect(sent(broker, "unsubscribe")).toHaveLength(1)
      expect(logged.some((line) => line.includes("refused to unsubscribe") && line.includes("private/#"))).toBe(true)
    }))
})
