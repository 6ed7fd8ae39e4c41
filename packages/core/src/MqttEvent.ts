/**
 * Connection events, published on `client.events`.
 *
 * @example
 * ```ts
 * import { Effect, Stream } from "effect"
 * import { MqttClient } from "@effect-mqtt/core"
 *
 * const logEvents = Effect.gen(function*() {
 *   const client = yield* MqttClient.MqttClient
 *   yield* client.events.pipe(
 *     Stream.runForEach((event) => Effect.log(event._tag))
 *   )
 * })
 * ```
 *
 * @since 0.1.0
 */
import type { ClientClosed, ConnectionError } from "./MqttError.ts"
import type { Strategy } from "./MqttOptions.ts"

/**
 * The broker accepted a connection (CONNACK).
 *
 * @since 0.1.0
 */
export interface Connected {
  readonly _tag: "Connected"
  readonly sessionPresent: boolean
  /** How many connections this client has had, this one included. */
  readonly connection: number
}

/**
 * A connection ended, or an attempt failed; `cause` says why.
 *
 * @since 0.1.0
 */
export interface Disconnected {
  readonly _tag: "Disconnected"
  readonly cause: ConnectionError | ClientClosed
}

/**
 * The client will try to connect again after `delayMillis`.
 *
 * @since 0.1.0
 */
export interface Reconnecting {
  readonly _tag: "Reconnecting"
  readonly attempt: number
  readonly delayMillis: number
}

/**
 * A message was dropped before it was sent (its receipt fails with
 * `MessageDropped`): by the queue strategy, or QoS 0 while offline.
 *
 * @since 0.1.0
 */
export interface MessageDropped {
  readonly _tag: "MessageDropped"
  readonly topic: string
  readonly reason: Exclude<Strategy, "suspend"> | "offline"
}

/**
 * A queued message expired (`messageExpiry`) before it could be sent.
 *
 * @since 0.1.0
 */
export interface MessageExpired {
  readonly _tag: "MessageExpired"
  readonly topic: string
}

/**
 * Any connection event.
 *
 * @since 0.1.0
 */
export type MqttEvent = Connected | Disconnected | Reconnecting | MessageDropped | MessageExpired
