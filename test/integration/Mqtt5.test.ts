/**
 * MQTT 5 against mosquitto 2.0 in v5 mode: properties both ways, subscription
 * options and identifiers, server limits, topic aliases, session take-over,
 * will delay, request/response, shared subscriptions, message expiry, and
 * interop with mosquitto_pub/mosquitto_sub -V 5 -D.
 */
import { describe, expect, it } from "@effect/vitest"
import { MqttMessage } from "@effect-mqtt/core"
import { Effect, Stream } from "effect"
import { awaitConnected, connect, connectAbortable } from "../helpers/Clients.ts"
import { Mosquitto, mosquittoPub, mosquittoSub, requireBroker } from "../helpers/index.ts"

const v5 = { protocolVersion: 5 } as const
const bounded = <A, E, R>(self: Effect.Effect<A, E, R>) => self.pipe(Effect.timeout("15 seconds"))
const startBroker = (config?: string) => Mosquitto.start(config === undefined ? {} : { config }).pipe(requireBroker)
/** A v5 client, connected. */
const connected = (url: string, options: Parameters<typeof connect>[1] = {}) =>
  Effect.tap(connect(url, { ...v5, ...options }), awaitConnected)

describe("MQTT 5 against mosquitto", () => {
  it.live("CONNACK properties reach the Connected event and stats; every PUBLISH property arrives as sent", () =>
    Effect.gen(function*() {
      const { url } = yield* startBroker("max_keepalive 30")
      const subscriber = yield* connected(url, { keepAlive: 120 })
      const server = (yield* subscriber.stats).server
      expect(server.serverKeepAlive).toBe(30)
      expect(server.topicAliasMaximum).toBeGreaterThan(0)
      const messages = yield* subscriber.subscribeScoped("props/+", { qos: 1 })
      const publisher = yield* connect(url, v5)
      const properties = {
        payloadFormatIndicator: true,
        messageExpiryInterval: 60,
        contentType: "application/json",
        responseTopic: "props/replies",
        correlationData: new Uint8Array([1, 2, 3]),
        userProperties: { trace: "t-1", tags: ["a", "b"] }
      }
      yield* publisher.publishAndWait({ topic: "props/all", payload: "{}", qos: 1, properties })
      const [message] = yield* messages.pipe(Stream.take(1), Stream.runCollect)
      expect(message.properties?.payloadFormatIndicator).toBe(true)
      expect(message.properties?.messageExpiryInterval).toBeLessThanOrEqual(60)
      expect(message.properties?.contentType).toBe("application/json")
      expect(message.properties?.responseTopic).toBe("props/replies")
      expect(Array.from(message.properties?.correlationData ?? [])).toEqual([1, 2, 3])
      expect(message.properties?.userProperties).toEqual({ trace: "t-1", tags: ["a", "b"] })
      expect(message.properties?.subscriptionIdentifier).toBeDefined()
    }).pipe(Effect.scoped, bounded))

  it.live("subscription options: no local, retain as published, retain handling", () =>
    Effect.gen(function*() {
      const { url } = yield* startBroker()
      const client = yield* connect(url, v5)
      yield* client.publishAndWait({ topic: "opts/retained", payload: "old", qos: 1, retain: true })
      const noLocal = yield* client.subscribeScoped("opts/#", { qos: 1, noLocal: true, retainHandling: 2 })
      const keepRetain = yield* client.subscribeScoped("opts/live", { qos: 1, retainAsPublished: true })
      const other = yield* connect(url, v5)
      yield* client.publishAndWait({ topic: "opts/mine", payload: "mine", qos: 1 })
      yield* other.publishAndWait({ topic: "opts/live", payload: "theirs", qos: 1, retain: true })
      // retainHandling 2: no retained message on subscribe; noLocal: not our own "mine"
      const [first] = yield* noLocal.pipe(Stream.take(1), Stream.runCollect)
      expect([first.topic, MqttMessage.text(first)]).toEqual(["opts/live", "theirs"])
      const [live] = yield* keepRetain.pipe(Stream.take(1), Stream.runCollect)
      expect(live.retain).toBe(true) // retain as published
    }).pipe(Effect.scoped, bounded))

  it.live("overlapping subscriptions are routed by subscription identifier", () =>
    Effect.gen(function*() {
      const { url } = yield* startBroker()
      const client = yield* connect(url, v5)
      const wide = yield* client.subscribeScoped("ids/#", { qos: 1 })
      const narrow = yield* client.subscribeScoped("ids/a", { qos: 1 })
      yield* client.publishAndWait({ topic: "ids/a", payload: "1", qos: 1 })
      yield* client.publishAndWait({ topic: "ids/b", payload: "2", qos: 1 })
      expect((yield* wide.pipe(Stream.take(2), Stream.runCollect)).map(MqttMessage.text)).toEqual(["1", "2"])
      const [only] = yield* narrow.pipe(Stream.take(1), Stream.runCollect)
      expect(MqttMessage.text(only)).toBe("1")
      // mosquitto sends one copy per matching subscription, each with its identifier
      expect(only.properties?.subscriptionIdentifier).toBe(2)
    }).pipe(Effect.scoped, bounded))

  it.live("the broker's Maximum Packet Size: a larger publish fails with PacketTooLarge, others go", () =>
    Effect.gen(function*() {
      const { url } = yield* startBroker("max_packet_size 1000")
      const client = yield* connected(url)
      expect((yield* client.stats).server.maximumPacketSize).toBe(1000)
      const big = yield* client.publish({ topic: "size", payload: new Uint8Array(2000), qos: 1 })
      yield* client.publishAndWait({ topic: "size", payload: "small", qos: 1 })
      const error = yield* Effect.flip(big.acknowledged)
      expect(error._tag).toBe("PacketTooLarge")
      expect((yield* client.stats).connected).toBe(true)
    }).pipe(Effect.scoped, bounded))

  it.live("our Maximum Packet Size: the broker does not send us larger messages", () =>
    Effect.gen(function*() {
      const { url } = yield* startBroker()
      const small = yield* connect(url, { ...v5, properties: { maximumPacketSize: 300 } })
      const messages = yield* small.subscribeScoped("limit", { qos: 1 })
      const publisher = yield* connect(url, v5)
      yield* publisher.publishAndWait({ topic: "limit", payload: new Uint8Array(1000), qos: 1 })
      yield* publisher.publishAndWait({ topic: "limit", payload: "fits", qos: 1 })
      const [message] = yield* messages.pipe(Stream.take(1), Stream.runCollect)
      expect(MqttMessage.text(message)).toBe("fits")
    }).pipe(Effect.scoped, bounded))

  it.live("topic aliases: repeated topics are sent as aliases and arrive with their topic", () =>
    Effect.gen(function*() {
      const { url } = yield* startBroker()
      const subscriber = yield* connect(url, v5)
      const messages = yield* subscriber.subscribeScoped("alias/#", { qos: 1 })
      const publisher = yield* connect(url, { ...v5, topicAliases: true })
      for (let i = 0; i < 5; i++) yield* publisher.publishAndWait({ topic: "alias/long/topic/name", payload: `${i}`, qos: 1 })
      yield* publisher.publishAndWait({ topic: "alias/other", payload: "x", qos: 1 })
      const got = yield* messages.pipe(Stream.take(6), Stream.runCollect)
      expect(got.map((m) => m.topic)).toEqual([...Array(5).fill("alias/long/topic/name"), "alias/other"])
    }).pipe(Effect.scoped, bounded))

  it.live("an assigned client identifier is used", () =>
    Effect.gen(function*() {
      const { url } = yield* startBroker()
      const anonymous = yield* connected(url, { clientId: "" })
      const clientId = (yield* anonymous.stats).clientId
      expect(clientId.length).toBeGreaterThan(0)
      expect((yield* anonymous.stats).server.assignedClientIdentifier).toBe(clientId)
    }).pipe(Effect.scoped, bounded))

  it.live("the broker's Maximum QoS and Retain Available are honoured before sending", () =>
    Effect.gen(function*() {
      const { url } = yield* startBroker("max_qos 1\nretain_available false")
      const client = yield* connected(url)
      const server = (yield* client.stats).server
      expect([server.maximumQoS, server.retainAvailable]).toEqual([1, false])
      const qos2 = yield* Effect.flip(client.publishAndWait({ topic: "limits", payload: "x", qos: 2 }))
      const retained = yield* Effect.flip(client.publishAndWait({ topic: "limits", payload: "x", qos: 1, retain: true }))
      expect(qos2._tag === "PublishRejected" && qos2.reasonName).toBe("QoSNotSupported")
      expect(retained._tag === "PublishRejected" && retained.reasonName).toBe("RetainNotSupported")
      yield* client.publishAndWait({ topic: "limits", payload: "x", qos: 1 })
      expect((yield* client.stats).connections).toBe(1)
    }).pipe(Effect.scoped, bounded))

  it.live("a will with a will delay is published after the delay, with its properties", () =>
    Effect.gen(function*() {
      const broker = yield* startBroker()
      const watcher = yield* connect(broker.url, v5)
      const wills = yield* watcher.subscribeScoped("will5/#", { qos: 1 })
      const { client, abort } = yield* connectAbortable(broker.port, {
        ...v5,
        reconnect: false,
        sessionExpiryInterval: 10,
        will: {
          topic: "will5/gone",
          payload: "gone",
          qos: 1,
          properties: { willDelayInterval: 1, contentType: "text/plain", userProperties: { why: "crash" } }
        }
      })
      yield* awaitConnected(client)
      yield* abort
      const abortedAt = Date.now()
      const [will] = yield* wills.pipe(Stream.take(1), Stream.runCollect)
      expect(Date.now() - abortedAt).toBeGreaterThanOrEqual(900)
      expect(will.properties?.contentType).toBe("text/plain")
      expect(will.properties?.userProperties).toEqual({ why: "crash" })
    }).pipe(Effect.scoped, bounded))

  it.live("request/response between two clients", () =>
    Effect.gen(function*() {
      const { url } = yield* startBroker()
      const responder = yield* connect(url, v5)
      const requests = yield* responder.subscribeScoped("svc/upper", { qos: 1 })
      yield* requests.pipe(
        Stream.runForEach((request) => responder.reply(request, { payload: MqttMessage.text(request).toUpperCase(), qos: 1 })),
        Effect.forkScoped
      )
      const requester = yield* connect(url, v5)
      const answers = yield* Effect.forEach(["a", "b", "c"], (payload) => requester.request({ topic: "svc/upper", payload }), {
        concurrency: 3
      })
      expect(answers.map(MqttMessage.text)).toEqual(["A", "B", "C"])
      const timeout = yield* Effect.flip(requester.request({ topic: "svc/nobody", payload: "?", timeout: "300 millis" }))
      expect(timeout._tag).toBe("RequestTimeout")
    }).pipe(Effect.scoped, bounded))

  it.live("shared subscriptions split the stream between consumers and together receive all of it", () =>
    Effect.gen(function*() {
      const { url } = yield* startBroker()
      const received: Array<Array<string>> = [[], []]
      for (const i of [0, 1]) {
        const consumer = yield* connect(url, v5)
        const messages = yield* consumer.subscribeScoped("$share/workers/jobs", { qos: 1 })
        yield* messages.pipe(Stream.runForEach((m) => Effect.sync(() => received[i].push(MqttMessage.text(m)))), Effect.forkScoped)
      }
      const producer = yield* connect(url, v5)
      for (let i = 0; i < 100; i++) yield* producer.publish({ topic: "jobs", payload: `${i}`, qos: 1 })
      yield* producer.publishAndWait({ topic: "jobs", payload: "last", qos: 1 })
      yield* Effect.gen(function*() {
        while (received[0].length + received[1].length < 101) yield* Effect.sleep("10 millis")
      })
      expect(received[0].length).toBeGreaterThan(0)
      expect(received[1].length).toBeGreaterThan(0)
      expect(new Set([...received[0], ...received[1]]).size).toBe(101)
    }).pipe(Effect.scoped, bounded))

  it.live("message expiry: an expired message is not delivered to a session that comes back late", () =>
    Effect.gen(function*() {
      const broker = yield* startBroker()
      const session = { ...v5, clientId: "expiring", cleanStart: false, sessionExpiryInterval: 60 } as const
      yield* Effect.scoped(Effect.gen(function*() {
        const offline = yield* connect(broker.url, session)
        yield* offline.subscribeScoped("exp", { qos: 1 })
        // disconnect first, so that ending the subscription's scope does not UNSUBSCRIBE: the session keeps it
        yield* offline.disconnect()
      }))
      const publisher = yield* connect(broker.url, v5)
      yield* publisher.publishAndWait({ topic: "exp", payload: "short", qos: 1, properties: { messageExpiryInterval: 1 } })
      yield* publisher.publishAndWait({ topic: "exp", payload: "long", qos: 1, properties: { messageExpiryInterval: 60 } })
      yield* Effect.sleep("2100 millis")
      const back = yield* connect(broker.url, session)
      const messages = yield* back.subscribeScoped("exp", { qos: 1 })
      const [message] = yield* messages.pipe(Stream.take(1), Stream.runCollect)
      expect(MqttMessage.text(message)).toBe("long")
      expect(message.properties?.messageExpiryInterval).toBeLessThan(60)
    }).pipe(Effect.scoped, bounded))
})

describe("MQTT 5 interop with mosquitto_pub / mosquitto_sub -D", () => {
  it.live("properties we send are printed by mosquitto_sub", () =>
    Effect.gen(function*() {
      const broker = yield* startBroker()
      const client = yield* connect(broker.url, v5)
      yield* client.publishAndWait({
        topic: "interop5/out",
        payload: "hello",
        qos: 1,
        retain: true,
        properties: {
          contentType: "text/x",
          correlationData: new TextEncoder().encode("abc"),
          responseTopic: "r/t",
          userProperties: { k: "v" },
          payloadFormatIndicator: true
        }
      })
      const sub = yield* mosquittoSub([
        "-h", broker.host, "-p", String(broker.port), "-V", "mqttv5", "-t", "interop5/out", "-C", "1", "-W", "10",
        "-F", "C=%C|D=%D|F=%F|P=%P|R=%R|p=%p"
      ]).pipe(requireBroker)
      expect(sub.stdout.toString().trim()).toBe("C=text/x|D=abc|F=1|P=k:v|R=r/t|p=hello")
    }).pipe(Effect.scoped, bounded))

  it.live("properties mosquitto_pub sends reach our message", () =>
    Effect.gen(function*() {
      const broker = yield* startBroker()
      const client = yield* connect(broker.url, v5)
      const messages = yield* client.subscribeScoped("interop5/in", { qos: 1 })
      const pub = yield* mosquittoPub([
        "-h", broker.host, "-p", String(broker.port), "-V", "mqttv5", "-t", "interop5/in", "-q", "1", "-m", "hi",
        "-D", "publish", "user-property", "k", "v",
        "-D", "publish", "content-type", "text/x",
        "-D", "publish", "correlation-data", "abc",
        "-D", "publish", "response-topic", "r/t",
        "-D", "publish", "message-expiry-interval", "30"
      ]).pipe(requireBroker)
      expect(pub.code).toBe(0)
      const [message] = yield* messages.pipe(Stream.take(1), Stream.runCollect)
      expect(MqttMessage.text(message)).toBe("hi")
      expect(message.properties?.userProperties).toEqual({ k: "v" })
      expect(message.properties?.contentType).toBe("text/x")
      expect(Buffer.from(message.properties?.correlationData ?? []).toString()).toBe("abc")
      expect(message.properties?.responseTopic).toBe("r/t")
      expect(message.properties?.messageExpiryInterval).toBeLessThanOrEqual(30)
    }).pipe(Effect.scoped, bounded))
})
