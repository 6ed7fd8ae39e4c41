/**
 * The MQTT client over Node.js transports: TCP (`mqtt://`, `tcp://`), TLS
 * (`mqtts://`, `ssl://`, `tls://`, with mutual TLS), WebSocket (`ws://`,
 * `wss://`) and Unix sockets (`unix:///path`), configured in code or from the
 * environment (`layerConfig`).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { MqttClient } from "@effect-mqtt/core"
 * import { NodeMqttClient } from "@effect-mqtt/node"
 *
 * const program = Effect.gen(function*() {
 *   const client = yield* MqttClient.MqttClient
 *   yield* client.publishAndWait({ topic: "hello", payload: "world", qos: 1 })
 * })
 *
 * program.pipe(Effect.provide(NodeMqttClient.layer({ url: "mqtt://127.0.0.1:1883" })), Effect.runPromise)
 * ```
 *
 * @since 0.1.0
 */
import { MqttClient, MqttError, type MqttOptions } from "@effect-mqtt/core"
import type * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import type * as Socket from "effect/socket/Socket"
import * as internalConfig from "./internal/config.ts"
import { makeSocket, resolveTls, resolveWebSocket } from "./internal/transport.ts"
import * as internalUrl from "./internal/url.ts"

/**
 * TLS settings, used by `mqtts://`, `ssl://`, `tls://` and `wss://` URLs.
 * Giving one with no TLS URL is an `InvalidOptions` (the connection would not
 * be secure).
 *
 * @example
 * ```ts
 * import * as Fs from "node:fs"
 * import { Redacted } from "effect"
 * import type { NodeMqttClient } from "@effect-mqtt/node"
 *
 * const tls: NodeMqttClient.TlsOptions = {
 *   ca: Fs.readFileSync("ca.pem"),
 *   cert: Fs.readFileSync("client.pem"),
 *   key: Redacted.make(Fs.readFileSync("client.key")),
 *   servername: "broker.example.com"
 * }
 * ```
 *
 * @since 0.1.0
 */
export interface TlsOptions {
  /**
   * CA certificates (PEM) to trust instead of Node's default root CAs: the
   * broker's certificate must chain up to one of them.
   */
  readonly ca?: string | Uint8Array | ReadonlyArray<string | Uint8Array> | undefined
  /** Client certificate chain (PEM) for mutual TLS; goes with `key`. */
  readonly cert?: string | Uint8Array | ReadonlyArray<string | Uint8Array> | undefined
  /** Private key (PEM) of `cert`. `Redacted`: never printed. */
  readonly key?: Redacted.Redacted<string | Uint8Array> | undefined
  /** Passphrase of an encrypted `key`. `Redacted`: never printed. */
  readonly passphrase?: Redacted.Redacted<string> | undefined
  /**
   * The name the broker's certificate must be valid for, also sent as SNI.
   * Default: the URL's host.
   */
  readonly servername?: string | undefined
  /** ALPN protocol names to offer (e.g. `["mqtt"]` for AWS IoT on port 443). */
  readonly alpnProtocols?: ReadonlyArray<string> | undefined
  /**
   * Verify the broker's certificate (default true). `false` accepts any
   * certificate, which anyone on the path can forge; the client logs a warning
   * when it is built.
   */
  readonly rejectUnauthorized?: boolean | undefined
}

/**
 * WebSocket settings, used by `ws://` and `wss://` URLs. The subprotocol is
 * always `mqtt`.
 *
 * @example
 * ```ts
 * import { Redacted } from "effect"
 * import type { NodeMqttClient } from "@effect-mqtt/node"
 *
 * const ws: NodeMqttClient.WebSocketOptions = {
 *   headers: { Authorization: Redacted.make("Bearer eyJhbGciOi...") }
 * }
 * ```
 *
 * @since 0.1.0
 */
export interface WebSocketOptions {
  /** Extra HTTP headers of the opening handshake. `Redacted` values are never printed. */
  readonly headers?: Readonly<Record<string, string | Redacted.Redacted<string>>> | undefined
}

/**
 * Client options plus the broker URL, TLS and WebSocket settings.
 *
 * @example
 * ```ts
 * import { Redacted } from "effect"
 * import type { NodeMqttClient } from "@effect-mqtt/node"
 *
 * const options: NodeMqttClient.NodeMqttClientOptions = {
 *   url: "mqtts://sensor:s3cret@broker.example.com?clientId=sensor-17&keepAlive=30",
 *   ca: "-----BEGIN CERTIFICATE-----\n...",
 *   capacity: 256
 * }
 * ```
 *
 * @since 0.1.0
 */
export interface NodeMqttClientOptions extends MqttOptions.MqttClientOptions, TlsOptions, WebSocketOptions {
  /**
   * The broker: `mqtt://` / `tcp://` (port 1883), `mqtts://` / `ssl://` /
   * `tls://` (8883), `ws://` (80) / `wss://` (443) (path `/mqtt` when the URL
   * has none), or `unix:///path/to/broker.sock`. User info becomes
   * username/password; the query string may set `clientId`, `keepAlive`,
   * `clean` (or `cleanSession` / `cleanStart`), `protocolVersion`,
   * `connectTimeout`, `sessionExpiryInterval`, `capacity`, `strategy` and
   * `maxInflight`. Options given here win over the URL's.
   *
   * Several URLs: connection attempts rotate through them (failover). The
   * client has one set of credentials and options: they come from the first
   * URL, and the others must repeat them identically or leave them out.
   */
  readonly url: string | ReadonlyArray<string>
}

/**
 * A parsed broker URL (see {@link parseUrl}).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { NodeMqttClient } from "@effect-mqtt/node"
 *
 * const address: NodeMqttClient.BrokerAddress = Effect.runSync(NodeMqttClient.parseUrl("wss://broker.example.com"))
 * // { transport: "wss", host: "broker.example.com", port: 443, path: "/mqtt", ... }
 * ```
 *
 * @since 0.1.0
 */
export interface BrokerAddress extends internalUrl.BrokerAddress {}

/**
 * How bytes reach the broker, from the URL scheme.
 *
 * @example
 * ```ts
 * import type { NodeMqttClient } from "@effect-mqtt/node"
 *
 * const secure = (transport: NodeMqttClient.Transport) => transport === "tls" || transport === "wss"
 * ```
 *
 * @since 0.1.0
 */
export type Transport = internalUrl.Transport

/**
 * Client options a URL query string may set.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { NodeMqttClient } from "@effect-mqtt/node"
 *
 * const options: NodeMqttClient.UrlOptions = Effect.runSync(
 *   NodeMqttClient.parseUrl("mqtt://broker?clientId=a&keepAlive=30&clean=false&protocolVersion=5")
 * ).options
 * // { clientId: "a", keepAlive: 30, cleanSession: false, protocolVersion: 5 }
 * ```
 *
 * @since 0.1.0
 */
export type UrlOptions = internalUrl.UrlOptions

/**
 * Parses a broker URL: transport, host, port (the scheme's default when
 * absent), WebSocket path or Unix socket path, user info (the password
 * `Redacted`) and the client options of its query string. A malformed or
 * unsupported URL fails with `InvalidOptions` saying why; the reason never
 * contains the user info or the query string.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { NodeMqttClient } from "@effect-mqtt/node"
 *
 * const program = Effect.gen(function*() {
 *   const address = yield* NodeMqttClient.parseUrl("mqtts://user:pw@broker.example.com?keepAlive=30")
 *   // address.transport === "tls", address.port === 8883, address.options.keepAlive === 30
 *   yield* NodeMqttClient.parseUrl("http://broker").pipe(
 *     Effect.catchTag("InvalidOptions", (e) => Effect.log(e.message)) // scheme "http:" is not supported...
 *   )
 * })
 * ```
 *
 * @since 0.1.0
 */
export const parseUrl: (url: string) => Effect.Effect<BrokerAddress, MqttError.InvalidOptions> = internalUrl.parseUrl

/**
 * The query parameters a broker URL may carry.
 *
 * @example
 * ```ts
 * import { NodeMqttClient } from "@effect-mqtt/node"
 *
 * console.log(NodeMqttClient.urlQueryParameters.join(", ")) // clientId, keepAlive, clean, ...
 * ```
 *
 * @since 0.1.0
 */
export const urlQueryParameters: ReadonlyArray<string> = internalUrl.QUERY_PARAMETERS

/**
 * Builds a client connected to `options.url`; the event loop lives in the
 * current scope. Fails at once with `InvalidOptions` for a bad URL, a bad
 * option, or TLS material that cannot be loaded (bad PEM, wrong passphrase).
 * Connection failures (including `TlsError`) are reported on `events` and
 * retried on the `reconnect` schedule.
 *
 * @example
 * ```ts
 * import * as Fs from "node:fs"
 * import { Effect, Redacted } from "effect"
 * import { NodeMqttClient } from "@effect-mqtt/node"
 *
 * const program = Effect.gen(function*() {
 *   const client = yield* NodeMqttClient.make({
 *     url: "mqtts://broker.example.com",
 *     ca: Fs.readFileSync("ca.pem"),
 *     cert: Fs.readFileSync("client.pem"),
 *     key: Redacted.make(Fs.readFileSync("client.key"))
 *   })
 *   yield* client.publishAndWait({ topic: "hello", payload: "over mutual TLS", qos: 1 })
 * }).pipe(Effect.scoped)
 * ```
 *
 * @since 0.1.0
 */
export const make = (
  options: NodeMqttClientOptions
): Effect.Effect<MqttClient.Service, MqttError.InvalidOptions, Scope.Scope> =>
  Effect.gen(function*() {
    const {
      url,
      ca,
      cert,
      key,
      passphrase,
      servername,
      alpnProtocols,
      rejectUnauthorized,
      headers,
      ...clientOptions
    } = options
    const urls: ReadonlyArray<string> = typeof url === "string" ? [url] : Array.isArray(url) ? url : []
    if (urls.length === 0) {
      return yield* new MqttError.InvalidOptions({ reason: "url needs at least one broker URL" })
    }
    const addresses = yield* Effect.forEach(urls, internalUrl.parseUrl)
    const tls = yield* resolveTls({ ca, cert, key, passphrase, servername, alpnProtocols, rejectUnauthorized }, addresses)
    const ws = yield* resolveWebSocket(headers, addresses)
    const merged = yield* internalUrl.mergeUrlOptions(urls, addresses, clientOptions)
    if (tls?.rejectUnauthorized === false) {
      yield* Effect.logWarning(
        "effect-mqtt: rejectUnauthorized is false: the broker's TLS certificate is not verified, " +
          "so anyone on the network path can impersonate the broker"
      )
    }
    const sockets = yield* Effect.forEach(addresses, (address) =>
      makeSocket(address, tls, ws, merged.connectTimeout))
    // MQTT 5 "use another server" / "server moved": dial the referenced broker the same way as the first URL.
    const redirect = (serverReference: string) =>
      Effect.suspend(() => {
        const address = internalUrl.serverReferenceAddress(serverReference, addresses[0])
        return address === undefined ? Effect.succeed(undefined) : makeSocket(address, tls, ws, merged.connectTimeout)
      })
    return yield* MqttClient.makeWithSockets(merged, sockets as [Socket.Socket, ...Array<Socket.Socket>], {
      redirect
    })
  })

/**
 * A layer providing `MqttClient` connected to `options.url`.
 *
 * @example
 * ```ts
 * import { Effect, Redacted } from "effect"
 * import { MqttClient } from "@effect-mqtt/core"
 * import { NodeMqttClient } from "@effect-mqtt/node"
 *
 * const MqttLive = NodeMqttClient.layer({
 *   url: "wss://broker.example.com/mqtt",
 *   username: "app",
 *   password: Redacted.make("s3cret")
 * })
 *
 * const program = Effect.gen(function*() {
 *   const client = yield* MqttClient.MqttClient
 *   yield* client.publishAndWait({ topic: "hello", payload: "over WebSocket", qos: 1 })
 * }).pipe(Effect.provide(MqttLive))
 * ```
 *
 * @since 0.1.0
 */
export const layer = (options: NodeMqttClientOptions): Layer.Layer<MqttClient.MqttClient, MqttError.InvalidOptions> =>
  Layer.effect(MqttClient.MqttClient, make(options))

/**
 * The environment variable each option is read from by {@link config}.
 *
 * @example
 * ```ts
 * import { NodeMqttClient } from "@effect-mqtt/node"
 *
 * NodeMqttClient.configNames.password // "MQTT_PASSWORD"
 * ```
 *
 * @since 0.1.0
 */
export const configNames: typeof internalConfig.ENV = internalConfig.ENV

/**
 * The client options as an `effect/Config`, read from the current
 * `ConfigProvider` (the environment by default): `MQTT_URL` (required; a
 * comma-separated list for failover), `MQTT_USERNAME`, `MQTT_PASSWORD`
 * (`Redacted`), `MQTT_CLIENT_ID`, `MQTT_KEEPALIVE`… and the TLS files
 * (`MQTT_CA_FILE`, `MQTT_CERT_FILE`, `MQTT_KEY_FILE`, read from disk when the
 * config loads). The README lists every variable; {@link configNames} maps
 * options to names. Options that are functions or schedules (`retryRefused`, a
 * custom `reconnect` schedule) and v5 `properties` are not read: pass them to
 * {@link layerConfig}.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { NodeMqttClient } from "@effect-mqtt/node"
 *
 * const program = Effect.gen(function*() {
 *   const options = yield* NodeMqttClient.config // MQTT_URL, MQTT_CLIENT_ID, ... from the environment
 *   const client = yield* NodeMqttClient.make({ ...options, capacity: 64 })
 *   yield* client.publishAndWait({ topic: "hello", payload: "configured", qos: 1 })
 * }).pipe(Effect.scoped)
 * ```
 *
 * @since 0.1.0
 */
export const config: Config.Config<NodeMqttClientOptions> = internalConfig.config

/**
 * A layer providing `MqttClient` configured by {@link config} (the
 * environment by default), so a service configures its client without code.
 * `overrides` set what the environment cannot express (a `reconnect`
 * schedule, `retryRefused`, v5 `properties`) and win over the variables.
 *
 * @example
 * ```ts
 * import { ConfigProvider, Effect, Layer } from "effect"
 * import { MqttClient } from "@effect-mqtt/core"
 * import { NodeMqttClient } from "@effect-mqtt/node"
 *
 * // In production the variables come from the process environment; here from a record.
 * const MqttLive = NodeMqttClient.layerConfig().pipe(
 *   Layer.provide(ConfigProvider.layer(ConfigProvider.fromEnv({
 *     env: { MQTT_URL: "mqtt://127.0.0.1:1883", MQTT_CLIENT_ID: "billing-1", MQTT_KEEPALIVE: "30" }
 *   })))
 * )
 *
 * const program = Effect.gen(function*() {
 *   const client = yield* MqttClient.MqttClient
 *   yield* client.publishAndWait({ topic: "hello", payload: "from the environment", qos: 1 })
 * }).pipe(Effect.provide(MqttLive))
 * ```
 *
 * @since 0.1.0
 */
export const layerConfig = (
  overrides?: Partial<NodeMqttClientOptions>
): Layer.Layer<MqttClient.MqttClient, MqttError.InvalidOptions | Config.ConfigError> =>
  Layer.effect(
    MqttClient.MqttClient,
    Effect.gen(function*() {
      const options: Record<string, unknown> = { ...(yield* config) }
      for (const [name, value] of Object.entries(overrides ?? {})) if (value !== undefined) options[name] = value
      return yield* make(options as unknown as NodeMqttClientOptions)
    })
  )
