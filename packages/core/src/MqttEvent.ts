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
import type { UserProperties } from "./MqttMessage.ts"
import type { Strategy } from "./MqttOptions.ts"

/**
 * What the broker said about itself in its CONNACK (MQTT 5 properties; empty
 * with MQTT 3.1.1).
 *
 * @since 0.1.0
 */
export interface ServerProperties {
  readonly sessionExpiryInterval?: number | undefined
  /** Most QoS 1/2 messages we may have unacknowledged towards it (our inflight window is capped by it). */
  readonly receiveMaximum?: number | undefined
  readonly maximumQoS?: number | undefined
  readonly retainAvailable?: boolean | undefined
  /** Largest packet it accepts (larger publishes fail with `PacketTooLarge`). */
  readonly maximumPacketSize?: number | undefined
  /** The client identifier it assigned, when ours was empty. */
  readonly assignedClientIdentifier?: string | undefined
  readonly topicAliasMaximum?: number | undefined
  readonly reasonString?: string | undefined
  readonly userProperties?: UserProperties | undefined
  readonly wildcardSubscriptionAvailable?: boolean | undefined
  readonly subscriptionIdentifiersAvailable?: boolean | undefined
  readonly sharedSubscriptionAvailable?: boolean | undefined
  /** The keep-alive it imposes, in seconds (it replaces ours). */
  readonly serverKeepAlive?: number | undefined
  readonly responseInformation?: string | undefined
  readonly serverReference?: string | undefined
  readonly authenticationMethod?: string | undefined
  readonly authenticationData?: Uint8Array | undefined
}

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
  /** The client identifier in use (assigned by the broker when ours was empty). */
  readonly clientId: string
  /** The broker's CONNACK properties (MQTT 5). */
  readonly properties: ServerProperties
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
