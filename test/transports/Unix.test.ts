/**
 * MQTT over a Unix domain socket: mosquitto 2.0's `listener 0 /path/to.sock`.
 */
import { describe, expect, it } from "@effect/vitest"
import { NodeMqttClient } from "@effect-mqtt/node"
import { Effect } from "effect"
import * as Path from "node:path"
import { awaitDisconnects, bounded, causes, recordEvents, roundTrip, startBroker } from "./shared.ts"

describe("Unix socket (mosquitto `listener 0 <path>`)", () => {
  for (const version of [4, 5] as const) {
    it.live(`unix:///path: publish and subscribe at QoS 0/1/2 and 256 KiB (MQTT ${version === 4 ? "3.1.1" : "5"})`, () =>
      Effect.gen(function*() {
        const { unixUrl } = yield* startBroker()
        expect(unixUrl).toMatch(/^unix:\/\/\//)
        const subscriber = yield* NodeMqttClient.make({ url: unixUrl, protocolVersion: version })
        const publisher = yield* NodeMqttClient.make({ url: `${unixUrl}?clientId=unix-publisher-v${version}`, protocolVersion: version })
        expect(publisher.clientId).toBe(`unix-publisher-v${version}`)
        yield* roundTrip(subscriber, publisher, `unix/v${version}`, 256 * 1024)
      }).pipe(Effect.scoped, bounded))
  }

  it.live("messages cross between the unix socket and TCP; a path with a space, percent-encoded", () =>
    Effect.gen(function*() {
      const { mqttUrl, socketPath, unixUrl } = yield* startBroker()
      const overUnix = yield* NodeMqttClient.make({ url: unixUrl })
      const overTcp = yield* NodeMqttClient.make({ url: mqttUrl })
      yield* roundTrip(overTcp, overUnix, "cross/unix")
      // unix://localhost/path is accepted too; %20 is decoded.
      const address = yield* NodeMqttClient.parseUrl(`unix://localhost${Path.dirname(socketPath)}/my%20broker.sock`)
      expect(address.path).toBe(`${Path.dirname(socketPath)}/my broker.sock`)
    }).pipe(Effect.scoped, bounded))

  it.live("a socket file that does not exist: ConnectionLost naming the error (ENOENT)", () =>
    Effect.gen(function*() {
      const { socketPath } = yield* startBroker()
      const client = yield* NodeMqttClient.make({ url: `unix://${socketPath}.missing`, reconnect: false })
      const events = yield* recordEvents(client)
      yield* awaitDisconnects(events, 1)
      const [cause] = causes(events)
      expect(cause._tag).toBe("ConnectionLost")
      expect(cause.message).toContain("ENOENT")
    }).pipe(Effect.scoped, bounded))
})
