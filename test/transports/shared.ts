/**
 * Shared pieces of the transport tests: a mosquitto with one listener per
 * transport (TLS, TLS with an expired certificate, mutual TLS, WebSocket,
 * secure WebSocket, Unix socket, plus the plain one), certificates made by
 * openssl, an event recorder and a publish/subscribe round trip.
 */
import type { MqttClient, MqttEvent } from "@effect-mqtt/core"
import { MqttMessage } from "@effect-mqtt/core"
import { expect } from "@effect/vitest"
import { Effect, Schedule, Stream } from "effect"
import type { Scope } from "effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Certs from "../helpers/Certs.ts"
import { Mosquitto, requireBroker } from "../helpers/index.ts"

/** Every test is bounded. */
export const bounded = <A, E, R>(self: Effect.Effect<A, E, R>) => self.pipe(Effect.timeout("20 seconds"))

/** Retry quickly: the tests count attempts. */
export const fastRetry = Schedule.spaced("50 millis")

/** A broker with every transport, and its URLs (all on 127.0.0.1 or a unix socket in its temp dir). */
export interface TransportBroker {
  readonly broker: Mosquitto.Broker
  readonly certs: Certs.Certs
  readonly mqttUrl: string
  readonly tlsPort: number
  readonly tlsUrl: string
  readonly expiredTlsUrl: string
  readonly mutualTlsUrl: string
  readonly wsUrl: string
  readonly wssUrl: string
  readonly socketPath: string
  readonly unixUrl: string
}

/**
 * Starts mosquitto with every listener; `config` adds lines (e.g. a password
 * file). `certs` defaults to a fresh set.
 */
export const startBroker = (
  options: { readonly config?: string; readonly certs?: Certs.Certs } = {}
): Effect.Effect<TransportBroker, never, Scope.Scope> =>
  Effect.gen(function*() {
    const certs = options.certs ?? (yield* Certs.make.pipe(Certs.requireOpenssl))
    const tls = (cert: string) => [`cafile ${certs.caCert}`, `certfile ${cert}`, `keyfile ${certs.serverKey}`]
    let socketPath = ""
    const broker = yield* Mosquitto.start({
      extraPorts: 5,
      config: ({ dir, ports }) => {
        socketPath = Path.join(dir, "mqtt.sock")
        return [
          options.config ?? "",
          `listener ${ports[0]} 127.0.0.1`,
          ...tls(certs.serverCert),
          `listener ${ports[1]} 127.0.0.1`,
          ...tls(certs.expiredServerCert),
          `listener ${ports[2]} 127.0.0.1`,
          ...tls(certs.serverCert),
          "require_certificate true",
          `listener ${ports[3]} 127.0.0.1`,
          "protocol websockets",
          `listener ${ports[4]} 127.0.0.1`,
          "protocol websockets",
          ...tls(certs.serverCert),
          `listener 0 ${socketPath}`
        ].join("\n")
      }
    }).pipe(requireBroker)
    const [tlsPort, expiredPort, mutualPort, wsPort, wssPort] = broker.ports
    return {
      broker,
      certs,
      mqttUrl: broker.url,
      tlsPort,
      tlsUrl: `mqtts://127.0.0.1:${tlsPort}`,
      expiredTlsUrl: `mqtts://127.0.0.1:${expiredPort}`,
      mutualTlsUrl: `mqtts://127.0.0.1:${mutualPort}`,
      wsUrl: `ws://127.0.0.1:${wsPort}`,
      wssUrl: `wss://127.0.0.1:${wssPort}`,
      socketPath,
      unixUrl: `unix://${socketPath}`
    }
  })

/** Records every event of `client` from now on (the subscription is in place when this returns). */
export const recordEvents = (client: MqttClient.Service) =>
  Effect.gen(function*() {
    const events: Array<MqttEvent.MqttEvent> = []
    yield* client.events.pipe(Stream.runForEach((event) => Effect.sync(() => events.push(event))), Effect.forkScoped)
    yield* Effect.sleep("20 millis")
    return events
  })

/** The `Disconnected` causes recorded so far. */
export const causes = (events: ReadonlyArray<MqttEvent.MqttEvent>) =>
  events.flatMap((event) => event._tag === "Disconnected" ? [event.cause] : [])

/** Waits (polling, bounded by the test) until `events` holds `n` `Disconnected` events. */
export const awaitDisconnects = (events: ReadonlyArray<MqttEvent.MqttEvent>, n: number) =>
  Effect.sync(() => causes(events).length).pipe(
    Effect.repeat({ until: (count) => count >= n, schedule: Schedule.spaced("10 millis") })
  )

/**
 * Subscribes with `subscriber`, publishes one message per QoS with `publisher`
 * (one of them `bigPayloadBytes` long when given) and checks they arrive intact.
 */
export const roundTrip = (
  subscriber: MqttClient.Service,
  publisher: MqttClient.Service,
  prefix: string,
  bigPayloadBytes?: number
) =>
  Effect.gen(function*() {
    const messages = yield* subscriber.subscribeScoped(`${prefix}/#`, { qos: 2 })
    const big = bigPayloadBytes === undefined ? undefined : new Uint8Array(bigPayloadBytes).map((_, i) => (i * 31 + 7) & 0xff)
    const sent: Array<{ topic: string; payload: string | Uint8Array; qos: 0 | 1 | 2 }> = [
      { topic: `${prefix}/0`, payload: "qos 0", qos: 0 },
      { topic: `${prefix}/1`, payload: "qos 1", qos: 1 },
      { topic: `${prefix}/2`, payload: "qos 2", qos: 2 },
      ...(big === undefined ? [] : [{ topic: `${prefix}/big`, payload: big, qos: 1 as const }])
    ]
    for (const message of sent) yield* publisher.publishAndWait(message)
    const received = yield* messages.pipe(Stream.take(sent.length), Stream.runCollect)
    expect(received.map((m) => [m.topic, m.qos])).toEqual(sent.map((m) => [m.topic, m.qos]))
    for (let i = 0; i < 3; i++) expect(MqttMessage.text(received[i])).toBe(sent[i].payload)
    if (big !== undefined) {
      const got = received[3].payload
      expect(got.length).toBe(big.length)
      expect(Buffer.from(got).equals(Buffer.from(big))).toBe(true)
    }
  })

/** The users of {@link authBroker} and their passwords. */
export const USERS = { alice: "alice-password", bob: "bob-password" }

/** A password file (mosquitto_passwd -b) and an ACL: alice reads/writes allowed/#, bob reads everything and writes denied/#. */
export const authBroker = Effect.gen(function*() {
  const certs = yield* Certs.make.pipe(Certs.requireOpenssl)
  const passwordFile = Path.join(certs.dir, "passwords")
  const aclFile = Path.join(certs.dir, "acl")
  Fs.writeFileSync(passwordFile, "")
  for (const [user, password] of Object.entries(USERS)) {
    const result = ChildProcess.spawnSync("mosquitto_passwd", ["-b", passwordFile, user, password], {
      timeout: 10_000,
      encoding: "utf8"
    })
    if (result.status !== 0) {
      return yield* Effect.die(new Error(`mosquitto_passwd failed (install mosquitto): ${result.error?.message ?? result.stderr}`))
    }
  }
  Fs.writeFileSync(
    aclFile,
    ["user alice", "topic readwrite allowed/#", "", "user bob", "topic read #", "topic write denied/#", ""].join("\n")
  )
  Fs.chmodSync(passwordFile, 0o644)
  Fs.chmodSync(aclFile, 0o644)
  return yield* startBroker({
    certs,
    config: ["allow_anonymous false", `password_file ${passwordFile}`, `acl_file ${aclFile}`].join("\n")
  })
})

