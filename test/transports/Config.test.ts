/**
 * `NodeMqttClient.layerConfig`: a service configured from its environment,
 * here a custom `ConfigProvider` over a record of variables, against mosquitto
 * (mutual TLS with an encrypted key, a password file, MQTT 5).
 */
import { describe, expect, it } from "@effect/vitest"
import { MqttClient } from "@effect-mqtt/core"
import { NodeMqttClient } from "@effect-mqtt/node"
import { ConfigProvider, Effect, Layer, Stream } from "effect"
import { freePort } from "../helpers/index.ts"
import { authBroker, bounded, USERS } from "./shared.ts"

const withEnv = (env: Record<string, string>, overrides?: Partial<NodeMqttClient.NodeMqttClientOptions>) =>
  NodeMqttClient.layerConfig(overrides).pipe(Layer.provide(ConfigProvider.layer(ConfigProvider.fromEnv({ env }))))

describe("layerConfig", () => {
  it.live("reads a full configuration: URL, credentials, client options, TLS files, key passphrase, will", () =>
    Effect.gen(function*() {
      const { broker, certs, mutualTlsUrl } = yield* authBroker
      const env = {
        MQTT_URL: mutualTlsUrl,
        MQTT_USERNAME: "alice",
        MQTT_PASSWORD: USERS.alice,
        MQTT_CLIENT_ID: "configured-client",
        MQTT_PROTOCOL_VERSION: "5",
        MQTT_KEEPALIVE: "30",
        MQTT_CLEAN_SESSION: "false",
        MQTT_SESSION_EXPIRY_INTERVAL: "60",
        MQTT_CONNECT_TIMEOUT: "5 seconds",
        MQTT_CAPACITY: "64",
        MQTT_STRATEGY: "sliding",
        MQTT_MAX_INFLIGHT: "5",
        MQTT_RECONNECT: "true",
        MQTT_MESSAGE_EXPIRY: "1 minute",
        MQTT_QUEUE_QOS0_WHILE_OFFLINE: "false",
        MQTT_ON_SESSION_LOST: "fail",
        MQTT_WILL_TOPIC: "allowed/will",
        MQTT_WILL_PAYLOAD: "configured client gone",
        MQTT_WILL_QOS: "1",
        MQTT_WILL_RETAIN: "false",
        MQTT_CA_FILE: certs.caCert,
        MQTT_CERT_FILE: certs.clientCert,
        MQTT_KEY_FILE: certs.clientKeyEncrypted,
        MQTT_KEY_PASSPHRASE: certs.clientKeyPassphrase,
        MQTT_TLS_SERVERNAME: "localhost",
        MQTT_TLS_REJECT_UNAUTHORIZED: "true",
        MQTT_TLS_ALPN: "mqtt"
      }
      yield* Effect.gen(function*() {
        const client = yield* MqttClient.MqttClient
        expect(client.clientId).toBe("configured-client")
        const messages = yield* client.subscribeScoped("allowed/config", { qos: 1 })
        yield* client.publishAndWait({ topic: "allowed/config", payload: "from the environment", qos: 2 })
        const [message] = yield* messages.pipe(Stream.take(1), Stream.runCollect)
        expect(message.topic).toBe("allowed/config")
        const stats = yield* client.stats
        expect([stats.capacity, stats.strategy, stats.connections]).toEqual([64, "sliding", 1])
      }).pipe(Effect.provide(withEnv(env)), Effect.scoped)
      // mosquitto logs what it got: protocol 5, clean start 0, keep-alive 30, user alice.
      const log = yield* broker.log
      expect(log).toMatch(/New client connected from .* as configured-client \(p5, c0, k30, u'alice'\)/)
    }).pipe(Effect.scoped, bounded))

  it.live("MQTT_URL as a comma-separated failover list; URL query options; overrides win over variables", () =>
    Effect.gen(function*() {
      const { broker, mqttUrl } = yield* authBroker
      const closed = yield* freePort // nothing listens there
      const env = {
        MQTT_URL: `mqtt://127.0.0.1:${closed}?keepAlive=20 , ${mqttUrl}?keepAlive=20`,
        MQTT_USERNAME: "alice",
        MQTT_PASSWORD: USERS.alice,
        MQTT_CLIENT_ID: "from-env"
      }
      yield* Effect.gen(function*() {
        const client = yield* MqttClient.MqttClient
        expect(client.clientId).toBe("failover-client")
        yield* client.publishAndWait({ topic: "allowed/failover", payload: "second URL", qos: 1 })
        expect((yield* client.stats).connections).toBe(1)
      }).pipe(Effect.provide(withEnv(env, { clientId: "failover-client" })), Effect.scoped)
      expect(yield* broker.log).toMatch(/as failover-client \(p2, c1, k20, u'alice'\)/)
    }).pipe(Effect.scoped, bounded))
})
