/**
 * Secrets (the password, the private key and its passphrase, secret WebSocket
 * headers, a password in a URL) never appear in logs, spans, error messages,
 * `toString`, `JSON.stringify` or `util.inspect` of the options, the client,
 * its events and its errors. Everything the client produces while it connects,
 * is refused, fails TLS and rejects bad URLs is captured and searched.
 */
import { describe, expect, it } from "@effect/vitest"
import { MqttClient } from "@effect-mqtt/core"
import { NodeMqttClient } from "@effect-mqtt/node"
import { ConfigProvider, Effect, Layer, Logger, Redacted, References, Stream, Tracer } from "effect"
import * as Util from "node:util"
import { authBroker, awaitDisconnects, bounded, causes, fastRetry, recordEvents, USERS } from "./shared.ts"

/** Every way a value can be printed. */
const renderings = (value: unknown): Array<string> => {
  const out = [Util.inspect(value, { depth: 12, showHidden: false, getters: true }), safe(() => JSON.stringify(value))]
  out.push(safe(() => String(value)))
  if (value instanceof Error) out.push(value.message, String(value.stack))
  return out
}
const safe = (f: () => unknown) => {
  try {
    return String(f())
  } catch (error) {
    return `(throws ${String(error)})`
  }
}

/** Records log lines (message and cause, inspected deeply) and spans (name, attributes, events, exit). */
const recorder = () => {
  const logs: Array<string> = []
  const spans: Array<Tracer.NativeSpan> = []
  const logger = Logger.make((entry) => {
    logs.push(Util.inspect({ level: entry.logLevel, message: entry.message, cause: entry.cause }, { depth: 12 }))
  })
  const tracer = Tracer.make({
    span: (options) => {
      const span = new Tracer.NativeSpan(options)
      spans.push(span)
      return span
    }
  })
  const layer = Layer.mergeAll(Logger.layer([logger]), Layer.succeed(References.MinimumLogLevel, "All"))
  const spanText = () => spans.map((span) => Util.inspect(span, { depth: 12 }))
  return { logs, spans, layer, tracer, spanText }
}

describe("secrets stay secret", () => {
  it.live("in options, client, events, errors, logs and spans: connected, refused, TLS failure, bad URLs", () =>
    Effect.gen(function*() {
      const { certs, mqttUrl, mutualTlsUrl, wssUrl } = yield* authBroker
      const keyPem = certs.read(certs.clientKeyEncrypted).toString("utf8")
      // A line of the key's base64 body: what a leak of the key would contain.
      const keyBody = keyPem.split("\n")[2]
      const secrets = [USERS.alice, keyBody, certs.clientKeyPassphrase, "Bearer tok-SECRET-header", "url-SECRET-password"]
      const texts: Array<string> = []
      const rec = recorder()

      yield* Effect.gen(function*() {
        const options: NodeMqttClient.NodeMqttClientOptions = {
          url: mutualTlsUrl,
          username: "alice",
          password: Redacted.make(USERS.alice),
          ca: certs.read(certs.caCert),
          cert: certs.read(certs.clientCert),
          key: Redacted.make(keyPem),
          passphrase: Redacted.make(certs.clientKeyPassphrase)
        }
        texts.push(...renderings(options))

        // 1. Connected, over mutual TLS and over secure WebSocket with a secret header.
        const client = yield* NodeMqttClient.make(options)
        const overWss = yield* NodeMqttClient.make({
          ...options,
          url: wssUrl,
          headers: { Authorization: Redacted.make("Bearer tok-SECRET-header") }
        })
        const events = yield* recordEvents(client)
        const messages = yield* overWss.subscribeScoped("allowed/secrets", { qos: 1 })
        yield* client.publishAndWait({ topic: "allowed/secrets", payload: "hello", qos: 1 })
        yield* messages.pipe(Stream.take(1), Stream.runCollect)
        texts.push(...renderings(client), ...renderings(overWss), ...renderings(yield* client.stats))
        texts.push(...events.flatMap(renderings))

        // 2. Refused: a wrong password (and the stopped client's later errors).
        const refused = yield* NodeMqttClient.make({
          ...options,
          url: mqttUrl,
          ca: undefined,
          cert: undefined,
          key: undefined,
          passphrase: undefined,
          password: Redacted.make("url-SECRET-password"),
          reconnect: fastRetry
        })
        const receipt = yield* refused.publish({ topic: "allowed/x", payload: "x", qos: 1 })
        const refusal = yield* Effect.flip(receipt.acknowledged)
        expect(refusal._tag).toBe("ConnectionRefused")
        texts.push(...renderings(refusal))
        texts.push(...renderings(yield* Effect.flip(refused.publish({ topic: "allowed/x", payload: "x" }))))

        // 3. A TLS failure with the key and passphrase loaded (wrong servername).
        const tlsFailing = yield* NodeMqttClient.make({ ...options, servername: "wrong.example", reconnect: false })
        const tlsEvents = yield* recordEvents(tlsFailing)
        yield* awaitDisconnects(tlsEvents, 1)
        const [tlsError] = causes(tlsEvents)
        expect(tlsError._tag).toBe("TlsError")
        texts.push(...renderings(tlsError), ...tlsEvents.flatMap(renderings))

        // 4. Bad URLs and options carrying secrets.
        const bad = [
          "mqtt://alice:url-SECRET-password@127.0.0.1:notaport",
          "http://alice:url-SECRET-password@127.0.0.1",
          "alice:url-SECRET-password@127.0.0.1:1883",
          "mqtt://alice:url-SECRET-password@127.0.0.1/a/path",
          "mqtt://alice:pw@127.0.0.1?password=url-SECRET-password",
          "mqtts://alice:url-SECRET-password@127.0.0.1?keepAlive=url-SECRET-password"
        ]
        for (const url of bad) {
          const error = yield* Effect.flip(NodeMqttClient.make({ url }))
          expect(error._tag).toBe("InvalidOptions")
          texts.push(...renderings(error))
        }
        const wrongPassphrase = yield* Effect.flip(
          NodeMqttClient.make({ ...options, passphrase: Redacted.make("url-SECRET-password") })
        )
        expect(wrongPassphrase._tag).toBe("InvalidOptions")
        texts.push(...renderings(wrongPassphrase))
        // rejectUnauthorized: false logs its warning (the logs are checked below).
        yield* NodeMqttClient.make({ ...options, rejectUnauthorized: false })
      }).pipe(
        Effect.withSpan("secrets-test"),
        Effect.withTracer(rec.tracer),
        Effect.provide(rec.layer),
        Effect.scoped
      )

      // 5. The options from the environment, and the config errors.
      const env = {
        MQTT_URL: mutualTlsUrl,
        MQTT_USERNAME: "alice",
        MQTT_PASSWORD: USERS.alice,
        MQTT_CA_FILE: certs.caCert,
        MQTT_CERT_FILE: certs.clientCert,
        MQTT_KEY_FILE: certs.clientKeyEncrypted,
        MQTT_KEY_PASSPHRASE: certs.clientKeyPassphrase
      }
      const configured = yield* NodeMqttClient.config.parse(ConfigProvider.fromEnv({ env }))
      texts.push(...renderings(configured))
      const headerError = yield* Effect.flip(
        NodeMqttClient.config.parse(
          ConfigProvider.fromEnv({ env: { ...env, MQTT_WS_HEADERS: "Authorization Bearer tok-SECRET-header" } })
        )
      )
      texts.push(...renderings(headerError))
      yield* Effect.gen(function*() {
        const client = yield* MqttClient.MqttClient
        yield* client.publishAndWait({ topic: "allowed/env", payload: "x", qos: 1 })
        texts.push(...renderings(client))
      }).pipe(
        Effect.provide(NodeMqttClient.layerConfig().pipe(Layer.provide(ConfigProvider.layer(ConfigProvider.fromEnv({ env }))))),
        Effect.withTracer(rec.tracer),
        Effect.provide(rec.layer),
        Effect.scoped
      )

      texts.push(...rec.logs, ...rec.spanText())
      expect(rec.logs.some((line) => line.includes("rejectUnauthorized"))).toBe(true)
      expect(rec.spans.length).toBeGreaterThan(0)
      const haystack = texts.join("\n")
      expect(haystack.length).toBeGreaterThan(10_000)
      for (const secret of secrets) {
        expect(haystack.includes(secret), `a secret leaked: ${secret.slice(0, 12)}...`).toBe(false)
      }
      // Sanity: what is not secret is there (the username, the redaction marker).
      expect(haystack).toContain("alice")
      expect(haystack).toContain("<redacted>")
    }).pipe(Effect.scoped, bounded))
})
