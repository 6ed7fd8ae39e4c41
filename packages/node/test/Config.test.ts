/**
 * `NodeMqttClient.config`: every variable to its option, defaults when absent,
 * and `ConfigError`s that name the variable (and never print a secret).
 */
import { describe, expect, it } from "@effect/vitest"
import { NodeMqttClient } from "@effect-mqtt/node"
import { ConfigProvider, Duration, Effect, Redacted } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"

const load = (env: Record<string, string>) => NodeMqttClient.config.parse(ConfigProvider.fromEnv({ env }))

describe("NodeMqttClient.config", () => {
  it.effect("MQTT_URL alone: only the URL is set, every other option keeps its default", () =>
    Effect.gen(function*() {
      expect(yield* load({ MQTT_URL: "mqtt://broker" })).toEqual({ url: "mqtt://broker" })
    }))

  it.effect("every variable maps to its option", () =>
    Effect.gen(function*() {
      const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-mqtt-config-"))
      try {
        Fs.writeFileSync(Path.join(dir, "ca.pem"), "CA PEM")
        Fs.writeFileSync(Path.join(dir, "cert.pem"), "CERT PEM")
        Fs.writeFileSync(Path.join(dir, "key.pem"), "KEY PEM")
        const options = yield* load({
          MQTT_URL: "mqtts://a:8883, mqtts://b:8883",
          MQTT_USERNAME: "svc",
          MQTT_PASSWORD: "pw",
          MQTT_CLIENT_ID: "svc-1",
          MQTT_PROTOCOL_VERSION: "5",
          MQTT_KEEPALIVE: "15",
          MQTT_CLEAN_SESSION: "false",
          MQTT_SESSION_EXPIRY_INTERVAL: "3600",
          MQTT_CONNECT_TIMEOUT: "2500",
          MQTT_CAPACITY: "100",
          MQTT_STRATEGY: "dropping",
          MQTT_MAX_INFLIGHT: "7",
          MQTT_RECONNECT: "false",
          MQTT_MESSAGE_EXPIRY: "30 seconds",
          MQTT_QUEUE_QOS0_WHILE_OFFLINE: "no",
          MQTT_ON_SESSION_LOST: "fail",
          MQTT_WILL_TOPIC: "svc/status",
          MQTT_WILL_PAYLOAD: "offline",
          MQTT_WILL_QOS: "1",
          MQTT_WILL_RETAIN: "yes",
          MQTT_CA_FILE: Path.join(dir, "ca.pem"),
          MQTT_CERT_FILE: Path.join(dir, "cert.pem"),
          MQTT_KEY_FILE: Path.join(dir, "key.pem"),
          MQTT_KEY_PASSPHRASE: "pass",
          MQTT_TLS_SERVERNAME: "broker.example.com",
          MQTT_TLS_ALPN: "mqtt, x-amzn-mqtt-ca",
          MQTT_TLS_REJECT_UNAUTHORIZED: "true",
          MQTT_WS_HEADERS: "Authorization=Bearer abc, X-Tenant=acme"
        })
        const { password, key, passphrase, headers, ca, cert, connectTimeout, messageExpiry, ...plain } = options
        expect(plain).toEqual({
          url: ["mqtts://a:8883", "mqtts://b:8883"],
          username: "svc",
          clientId: "svc-1",
          protocolVersion: 5,
          keepAlive: 15,
          cleanSession: false,
          sessionExpiryInterval: 3600,
          capacity: 100,
          strategy: "dropping",
          maxInflight: 7,
          reconnect: false,
          queueQoS0WhileOffline: false,
          onSessionLost: "fail",
          will: { topic: "svc/status", payload: "offline", qos: 1, retain: true },
          servername: "broker.example.com",
          alpnProtocols: ["mqtt", "x-amzn-mqtt-ca"],
          rejectUnauthorized: true
        })
        expect(Redacted.value(password!)).toBe("pw")
        expect(Buffer.from(Redacted.value(key!)).toString()).toBe("KEY PEM")
        expect(Redacted.value(passphrase!)).toBe("pass")
        expect(Buffer.from(ca as Uint8Array).toString()).toBe("CA PEM")
        expect(Buffer.from(cert as Uint8Array).toString()).toBe("CERT PEM")
        expect(Duration.toMillis(connectTimeout as Duration.Duration)).toBe(2500)
        expect(Duration.toMillis(messageExpiry as Duration.Duration)).toBe(30_000)
        expect(Object.keys(headers!)).toEqual(["Authorization", "X-Tenant"])
        expect(Redacted.value(headers!.Authorization as Redacted.Redacted<string>)).toBe("Bearer abc")
      } finally {
        Fs.rmSync(dir, { recursive: true, force: true })
      }
    }))

  it.effect("inline PEM: MQTT_CA, MQTT_CERT and MQTT_KEY (the key Redacted); MQTT_RECONNECT=true keeps the default", () =>
    Effect.gen(function*() {
      const options = yield* load({
        MQTT_URL: "mqtts://a",
        MQTT_CA: "CA",
        MQTT_CERT: "CERT",
        MQTT_KEY: "KEY",
        MQTT_RECONNECT: "true"
      })
      expect([options.ca, options.cert, Redacted.value(options.key!)]).toEqual(["CA", "CERT", "KEY"])
      expect("reconnect" in options).toBe(false)
    }))

  it.effect("the names are public", () =>
    Effect.sync(() => {
      expect(NodeMqttClient.configNames.url).toBe("MQTT_URL")
      expect(NodeMqttClient.configNames.keepAlive).toBe("MQTT_KEEPALIVE")
      expect(NodeMqttClient.configNames.caFile).toBe("MQTT_CA_FILE")
    }))
})

describe("NodeMqttClient.config errors (ConfigError naming the variable)", () => {
  const failure = (env: Record<string, string>) =>
    load(env).pipe(Effect.flip, Effect.map((error) => `${error.message}`))

  it.effect("a missing MQTT_URL", () =>
    Effect.gen(function*() {
      expect(yield* failure({})).toContain("MQTT_URL")
    }))

  it.effect("values of the wrong kind", () =>
    Effect.gen(function*() {
      expect(yield* failure({ MQTT_URL: "mqtt://a", MQTT_STRATEGY: "fast" })).toContain("MQTT_STRATEGY")
      expect(yield* failure({ MQTT_URL: "mqtt://a", MQTT_KEEPALIVE: "soon" })).toContain("MQTT_KEEPALIVE")
      expect(yield* failure({ MQTT_URL: "mqtt://a", MQTT_PROTOCOL_VERSION: "3" })).toContain("MQTT_PROTOCOL_VERSION")
      expect(yield* failure({ MQTT_URL: "mqtt://a", MQTT_CLEAN_SESSION: "perhaps" })).toContain("MQTT_CLEAN_SESSION")
      expect(yield* failure({ MQTT_URL: "mqtt://a", MQTT_CONNECT_TIMEOUT: "a while" })).toContain("MQTT_CONNECT_TIMEOUT")
    }))

  it.effect("a file that cannot be read; a file and an inline value; will fields without a topic", () =>
    Effect.gen(function*() {
      const missing = yield* failure({ MQTT_URL: "mqtts://a", MQTT_CA_FILE: "/nonexistent/ca.pem" })
      expect(missing).toContain("MQTT_CA_FILE")
      expect(missing).toContain("/nonexistent/ca.pem")
      expect(yield* failure({ MQTT_URL: "mqtts://a", MQTT_KEY_FILE: "/x", MQTT_KEY: "k" })).toContain(
        "set MQTT_KEY_FILE or MQTT_KEY, not both"
      )
      expect(yield* failure({ MQTT_URL: "mqtt://a", MQTT_WILL_PAYLOAD: "bye" })).toContain("need MQTT_WILL_TOPIC")
    }))

  it.effect("a malformed MQTT_WS_HEADERS entry is reported without its content", () =>
    Effect.gen(function*() {
      const message = yield* failure({ MQTT_URL: "wss://a", MQTT_WS_HEADERS: "Authorization Bearer s3cret-token" })
      expect(message).toContain("MQTT_WS_HEADERS")
      expect(message).not.toContain("s3cret")
    }))

  it.effect("layerConfig fails with the ConfigError", () =>
    Effect.gen(function*() {
      const error = yield* Effect.void.pipe(
        Effect.provide(NodeMqttClient.layerConfig()),
        Effect.provideService(ConfigProvider.ConfigProvider, ConfigProvider.fromEnv({ env: {} })),
        Effect.flip
      )
      expect(error._tag).toBe("ConfigError")
    }))
})
