/**
 * Messages: what `publish` takes and what a subscription stream yields.
 *
 * @example
 * ```ts
 * import { Effect, Stream } from "effect"
 * import { MqttClient, MqttMessage } from "@effect-mqtt/core"
 *
 * const program = Effect.gen(function*() {
 *   const client = yield* MqttClient.MqttClient
 *   yield* client.subscribe("sensors/#", { qos: 1 }).pipe(
 *     Stream.runForEach((message) => Effect.log(message.topic, MqttMessage.text(message)))
 *   )
 * })
 * ```
 *
 * @since 0.1.0
 */

/**
 * Quality of service: 0 at most once, 1 at least once, 2 exactly once.
 *
 * @since 0.1.0
 */
export type QoS = 0 | 1 | 2

/**
 * MQTT 5 user properties: a name maps to one value or several.
 *
 * @since 0.1.0
 */
export type UserProperties = { readonly [name: string]: string | ReadonlyArray<string> }

/**
 * MQTT 5 PUBLISH properties.
 *
 * @since 0.1.0
 */
export interface PublishProperties {
  readonly payloadFormatIndicator?: boolean | undefined
  readonly messageExpiryInterval?: number | undefined
  readonly topicAlias?: number | undefined
  readonly responseTopic?: string | undefined
  readonly correlationData?: Uint8Array | undefined
  readonly userProperties?: UserProperties | undefined
  readonly subscriptionIdentifier?: number | ReadonlyArray<number> | undefined
  readonly contentType?: string | undefined
}

/**
 * What the application publishes.
 *
 * @since 0.1.0
 */
export interface PublishMessage {
  readonly topic: string
  readonly payload: string | Uint8Array
  /** Default 0. */
  readonly qos?: QoS | undefined
  /** Default false. */
  readonly retain?: boolean | undefined
  /** MQTT 5 only. */
  readonly properties?: PublishProperties | undefined
}

/**
 * A message received on a subscription.
 *
 * @since 0.1.0
 */
export interface MqttMessage {
  readonly topic: string
  readonly payload: Uint8Array
  readonly qos: QoS
  readonly retain: boolean
  readonly dup: boolean
  /** MQTT 5 properties as the broker sent them. */
  readonly properties?: PublishProperties | undefined
}

const decoder = new TextDecoder()

/**
 * The payload decoded as UTF-8.
 *
 * @since 0.1.0
 */
export const text = (message: MqttMessage): string => decoder.decode(message.payload)
