/**
 * The client options read from `effect/Config` (environment variables by
 * default). Each variable maps to one option; absent variables leave the
 * option to its default. Files (`MQTT_CA_FILE`…) are read when the config is
 * loaded; a missing file is a `ConfigError` naming the variable.
 */
import type { MqttOptions } from "@effect-mqtt/core"
import * as Config from "effect/Config"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Fs from "node:fs"
import type { TlsInput } from "./transport.ts"

/** The options `config` produces: the client options, TLS, WebSocket headers and the URL. */
export interface ConfiguredOptions extends MqttOptions.MqttClientOptions, TlsInput {
  readonly url: string | ReadonlyArray<string>
  readonly headers?: Readonly<Record<string, string | Redacted.Redacted<string>>> | undefined
}

/** Every variable, in README order (the README table lists them with their meaning). */
export const ENV = {
  url: "MQTT_URL",
  username: "MQTT_USERNAME",
  password: "MQTT_PASSWORD",
  clientId: "MQTT_CLIENT_ID",
  protocolVersion: "MQTT_PROTOCOL_VERSION",
  keepAlive: "MQTT_KEEPALIVE",
  cleanSession: "MQTT_CLEAN_SESSION",
  sessionExpiryInterval: "MQTT_SESSION_EXPIRY_INTERVAL",
  connectTimeout: "MQTT_CONNECT_TIMEOUT",
  capacity: "MQTT_CAPACITY",
  strategy: "MQTT_STRATEGY",
  maxInflight: "MQTT_MAX_INFLIGHT",
  reconnect: "MQTT_RECONNECT",
  messageExpiry: "MQTT_MESSAGE_EXPIRY",
  queueQoS0WhileOffline: "MQTT_QUEUE_QOS0_WHILE_OFFLINE",
  onSessionLost: "MQTT_ON_SESSION_LOST",
  willTopic: "MQTT_WILL_TOPIC",
  willPayload: "MQTT_WILL_PAYLOAD",
  willQos: "MQTT_WILL_QOS",
  willRetain: "MQTT_WILL_RETAIN",
  caFile: "MQTT_CA_FILE",
  certFile: "MQTT_CERT_FILE",
  keyFile: "MQTT_KEY_FILE",
  ca: "MQTT_CA",
  cert: "MQTT_CERT",
  key: "MQTT_KEY",
  passphrase: "MQTT_KEY_PASSPHRASE",
  servername: "MQTT_TLS_SERVERNAME",
  alpnProtocols: "MQTT_TLS_ALPN",
  rejectUnauthorized: "MQTT_TLS_REJECT_UNAUTHORIZED",
  headers: "MQTT_WS_HEADERS"
} as const

const sourceError = (message: string) => new Config.ConfigError(new ConfigProvider.SourceError({ message }))

const list = (value: string) => value.split(",").map((item) => item.trim()).filter((item) => item !== "")

/** A duration such as `10 seconds` / `500 millis`, or a bare number of milliseconds. */
const duration = (name: string): Config.Config<Duration.Duration> =>
  Config.String(name).pipe(
    Config.mapEffect((value) => {
      const trimmed = value.trim()
      const decoded = /^\d+$/.test(trimmed)
        ? Option.some(Duration.millis(Number(trimmed)))
        : Duration.fromInput(trimmed as Duration.Input)
      return Option.isSome(decoded)
        ? Effect.succeed(decoded.value)
        : Effect.fail(sourceError(`${name}: expected a duration such as "10 seconds" or a number of milliseconds, got ${JSON.stringify(value)}`))
    })
  )

/** `Name=value,Name2=value2`; the whole variable is read as a secret, and so is every value. */
const headers = (name: string): Config.Config<Record<string, Redacted.Redacted<string>>> =>
  Config.Redacted(name).pipe(
    Config.mapEffect((redacted) => {
      const result: Record<string, Redacted.Redacted<string>> = {}
      for (const entry of list(Redacted.value(redacted))) {
        const at = entry.indexOf("=")
        if (at <= 0) {
          // Only the position is reported: the entry may hold a token.
          return Effect.fail(sourceError(`${name}: every entry must be Name=value (separated by commas)`))
        }
        result[entry.slice(0, at).trim()] = Redacted.make(entry.slice(at + 1).trim())
      }
      return Effect.succeed(result)
    })
  )

const readFile = (name: string, path: string) =>
  Effect.try({
    try: () => Fs.readFileSync(path),
    catch: (cause) =>
      sourceError(`${name}: cannot read ${JSON.stringify(path)}: ${cause instanceof Error ? cause.message : String(cause)}`)
  })

const optional = <A>(config: Config.Config<A>) => Config.option(config)

/** The `Config` describing every option that can come from the environment. */
export const config: Config.Config<ConfiguredOptions> = Config.all({
  url: Config.String(ENV.url),
  username: optional(Config.String(ENV.username)),
  password: optional(Config.Redacted(ENV.password)),
  clientId: optional(Config.String(ENV.clientId)),
  protocolVersion: optional(Config.Literals([4, 5], ENV.protocolVersion)),
  keepAlive: optional(Config.Int(ENV.keepAlive)),
  cleanSession: optional(Config.Boolean(ENV.cleanSession)),
  sessionExpiryInterval: optional(Config.Int(ENV.sessionExpiryInterval)),
  connectTimeout: optional(duration(ENV.connectTimeout)),
  capacity: optional(Config.Int(ENV.capacity)),
  strategy: optional(Config.Literals(["suspend", "dropping", "sliding"], ENV.strategy)),
  maxInflight: optional(Config.Int(ENV.maxInflight)),
  reconnect: optional(Config.Boolean(ENV.reconnect)),
  messageExpiry: optional(duration(ENV.messageExpiry)),
  queueQoS0WhileOffline: optional(Config.Boolean(ENV.queueQoS0WhileOffline)),
  onSessionLost: optional(Config.Literals(["republish", "fail"], ENV.onSessionLost)),
  willTopic: optional(Config.String(ENV.willTopic)),
  willPayload: optional(Config.String(ENV.willPayload)),
  willQos: optional(Config.Literals([0, 1, 2], ENV.willQos)),
  willRetain: optional(Config.Boolean(ENV.willRetain)),
  caFile: optional(Config.String(ENV.caFile)),
  certFile: optional(Config.String(ENV.certFile)),
  keyFile: optional(Config.String(ENV.keyFile)),
  ca: optional(Config.String(ENV.ca)),
  cert: optional(Config.String(ENV.cert)),
  key: optional(Config.Redacted(ENV.key)),
  passphrase: optional(Config.Redacted(ENV.passphrase)),
  servername: optional(Config.String(ENV.servername)),
  alpnProtocols: optional(Config.String(ENV.alpnProtocols)),
  rejectUnauthorized: optional(Config.Boolean(ENV.rejectUnauthorized)),
  headers: optional(headers(ENV.headers))
}).pipe(
  Config.mapEffect((c) =>
    Effect.gen(function*() {
      const both = (file: string, inline: string) => Effect.fail(sourceError(`set ${file} or ${inline}, not both`))
      if (Option.isSome(c.caFile) && Option.isSome(c.ca)) return yield* both(ENV.caFile, ENV.ca)
      if (Option.isSome(c.certFile) && Option.isSome(c.cert)) return yield* both(ENV.certFile, ENV.cert)
      if (Option.isSome(c.keyFile) && Option.isSome(c.key)) return yield* both(ENV.keyFile, ENV.key)
      const willSet = Option.isSome(c.willPayload) || Option.isSome(c.willQos) || Option.isSome(c.willRetain)
      if (willSet && Option.isNone(c.willTopic)) {
        return yield* Effect.fail(sourceError(`${ENV.willPayload}, ${ENV.willQos} and ${ENV.willRetain} need ${ENV.willTopic}`))
      }
      const ca = Option.isSome(c.caFile) ? yield* readFile(ENV.caFile, c.caFile.value) : Option.getOrUndefined(c.ca)
      const cert = Option.isSome(c.certFile)
        ? yield* readFile(ENV.certFile, c.certFile.value)
        : Option.getOrUndefined(c.cert)
      const key: Redacted.Redacted<string | Uint8Array> | undefined = Option.isSome(c.keyFile)
        ? Redacted.make<string | Uint8Array>(yield* readFile(ENV.keyFile, c.keyFile.value))
        : Option.getOrUndefined(c.key)
      const urls = list(c.url)
      const options: Record<string, unknown> = {
        url: urls.length === 1 ? urls[0] : urls,
        username: Option.getOrUndefined(c.username),
        password: Option.getOrUndefined(c.password),
        clientId: Option.getOrUndefined(c.clientId),
        protocolVersion: Option.getOrUndefined(c.protocolVersion),
        keepAlive: Option.getOrUndefined(c.keepAlive),
        cleanSession: Option.getOrUndefined(c.cleanSession),
        sessionExpiryInterval: Option.getOrUndefined(c.sessionExpiryInterval),
        connectTimeout: Option.getOrUndefined(c.connectTimeout),
        capacity: Option.getOrUndefined(c.capacity),
        strategy: Option.getOrUndefined(c.strategy),
        maxInflight: Option.getOrUndefined(c.maxInflight),
        // MQTT_RECONNECT=false: stay down after a lost connection; true (or unset): the default schedule.
        reconnect: Option.isSome(c.reconnect) && !c.reconnect.value ? false : undefined,
        messageExpiry: Option.getOrUndefined(c.messageExpiry),
        queueQoS0WhileOffline: Option.getOrUndefined(c.queueQoS0WhileOffline),
        onSessionLost: Option.getOrUndefined(c.onSessionLost),
        will: Option.isNone(c.willTopic) ? undefined : {
          topic: c.willTopic.value,
          payload: Option.getOrElse(c.willPayload, () => ""),
          ...(Option.isSome(c.willQos) ? { qos: c.willQos.value } : {}),
          ...(Option.isSome(c.willRetain) ? { retain: c.willRetain.value } : {})
        },
        ca,
        cert,
        key,
        passphrase: Option.getOrUndefined(c.passphrase),
        servername: Option.getOrUndefined(c.servername),
        alpnProtocols: Option.isSome(c.alpnProtocols) ? list(c.alpnProtocols.value) : undefined,
        rejectUnauthorized: Option.getOrUndefined(c.rejectUnauthorized),
        headers: Option.getOrUndefined(c.headers)
      }
      // Absent variables leave the option out (exactOptionalPropertyTypes-friendly, and defaults apply).
      for (const name of Object.keys(options)) if (options[name] === undefined) delete options[name]
      return options as unknown as ConfiguredOptions
    })
  )
)
