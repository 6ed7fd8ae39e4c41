/**
 * The MQTT client over Node.js sockets.
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
import * as NodeSocket from "@effect/platform-node/NodeSocket"
import { MqttClient, MqttError, type MqttOptions } from "@effect-mqtt/core"
import { Effect, Layer, Redacted } from "effect"
import type * as Scope from "effect/Scope"
import * as Socket from "effect/socket/Socket"

/**
 * Client options plus the broker URL.
 *
 * @since 0.1.0
 */
export interface NodeMqttClientOptions extends MqttOptions.MqttClientOptions {
  /**
   * `mqtt://host:port` or `tcp://host:port` (port 1883 by default). User info
   * becomes username/password. Several URLs: connection attempts rotate
   * through them (failover).
   */
  readonly url: string | ReadonlyArray<string>
}

/**
 * Where to connect, read from a broker URL.
 *
 * @since 0.1.0
 */
export interface BrokerAddress {
  readonly host: string
  readonly port: number
  readonly username: string | undefined
  readonly password: Redacted.Redacted<string> | undefined
}

/**
 * Parses a broker URL. TLS (`mqtts://`), WebSocket (`ws://`) and Unix sockets
 * are not supported yet and fail with `InvalidOptions`.
 *
 * @since 0.1.0
 */
export const parseUrl = (url: string): Effect.Effect<BrokerAddress, MqttError.InvalidOptions> =>
  Effect.suspend(() => {
    let parsed: URL
    try {
      parsed = new URL(url)
    } catch {
      return Effect.fail(new MqttError.InvalidOptions({ reason: `url is not a valid URL: ${JSON.stringify(redactUrl(url))}` }))
    }
    if (parsed.protocol !== "mqtt:" && parsed.protocol !== "tcp:") {
      return Effect.fail(
        new MqttError.InvalidOptions({
          reason: `url scheme "${parsed.protocol}" is not supported (use mqtt:// or tcp://)`
        })
      )
    }
    if (parsed.hostname === "") return Effect.fail(new MqttError.InvalidOptions({ reason: "url has no host" }))
    const host = parsed.hostname.startsWith("[") ? parsed.hostname.slice(1, -1) : parsed.hostname
    return Effect.succeed({
      host,
      port: parsed.port === "" ? 1883 : Number(parsed.port),
      username: parsed.username === "" ? undefined : decodeURIComponent(parsed.username),
      password: parsed.password === "" ? undefined : Redacted.make(decodeURIComponent(parsed.password))
    })
  })

const redactUrl = (url: string) => url.replace(/\/\/([^@/]*)@/, "//<redacted>@")

/**
 * Builds a client connected to `options.url`; the event loop lives in the current scope.
 *
 * @since 0.1.0
 */
export const make = (
  options: NodeMqttClientOptions
): Effect.Effect<MqttClient.Service, MqttError.InvalidOptions, Scope.Scope> =>
  Effect.gen(function*() {
    const { url, ...clientOptions } = options
    const urls = typeof url === "string" ? [url] : url
    if (urls.length === 0) return yield* new MqttError.InvalidOptions({ reason: "url needs at least one broker URL" })
    const addresses = yield* Effect.forEach(urls, parseUrl)
    const sockets = yield* Effect.forEach(addresses, (address) =>
      NodeSocket.makeNet({ host: address.host, port: address.port, noDelay: true }))
    // Credentials in the first URL apply unless given as options.
    const first = addresses[0]
    return yield* MqttClient.makeWithSockets({
      ...clientOptions,
      ...(clientOptions.username === undefined && first.username !== undefined ? { username: first.username } : {}),
      ...(clientOptions.password === undefined && first.password !== undefined ? { password: first.password } : {})
    }, sockets as [Socket.Socket, ...Array<Socket.Socket>])
  })

/**
 * A layer providing `MqttClient` connected to `options.url`.
 *
 * @since 0.1.0
 */
export const layer = (options: NodeMqttClientOptions): Layer.Layer<MqttClient.MqttClient, MqttError.InvalidOptions> =>
  Layer.effect(MqttClient.MqttClient, make(options))
