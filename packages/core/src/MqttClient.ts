/**
 * The MQTT client service.
 *
 * A client is a scoped resource: `make` forks the event loop into the scope
 * (it connects, batches writes, keeps alive and reconnects by itself, no user
 * code polls anything); closing the scope sends DISCONNECT, ends every
 * subscription stream and fails every pending receipt with `ClientClosed`.
 *
 * @example
 * ```ts
 * import { Effect, Stream } from "effect"
 * import { MqttClient, MqttMessage } from "@effect-mqtt/core"
 * import { NodeMqttClient } from "@effect-mqtt/node"
 *
 * const program = Effect.gen(function*() {
 *   const client = yield* MqttClient.MqttClient
 *   const receipt = yield* client.publish({ topic: "greetings", payload: "hello", qos: 1 })
 *   yield* receipt.acknowledged // PUBACK received
 *   const first = yield* client.subscribe("greetings/#").pipe(Stream.take(1), Stream.runCollect)
 *   yield* Effect.log(MqttMessage.text(first[0]))
 * }).pipe(Effect.provide(NodeMqttClient.layer({ url: "mqtt://127.0.0.1:1883" })))
 * ```
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import type * as Socket from "effect/socket/Socket"
import * as internal from "./internal/client.ts"
import type { ClientClosed, InvalidOptions, InvalidTopic, MqttError, QueueFull } from "./MqttError.ts"
import type { MqttEvent, ServerProperties } from "./MqttEvent.ts"
import type { MqttMessage, PublishMessage, PublishProperties, QoS } from "./MqttMessage.ts"
import type { MqttClientOptions, Strategy } from "./MqttOptions.ts"

/**
 * The handle of an accepted publish.
 *
 * @since 0.1.0
 */
export interface PublishReceipt {
  readonly topic: string
  readonly qos: QoS
  /**
   * Succeeds when QoS 0 was written to the socket, QoS 1 got PUBACK, QoS 2 got
   * PUBCOMP. Fails with `MessageDropped` (queue strategy), `PublishRejected`
   * (v5 reason code >= 0x80), `ClientClosed`, or the connection error that
   * stopped the client; at QoS 0 also with the connection error of a socket
   * write that failed (QoS 0 is not sent again). It can be awaited any number
   * of times.
   */
  readonly acknowledged: Effect.Effect<void, MqttError>
}

/**
 * Options of one subscription.
 *
 * @since 0.1.0
 */
export interface SubscribeOptions {
  /** Maximum QoS requested for the subscription. Default 0. */
  readonly qos?: QoS | undefined
  /** MQTT 5: do not receive our own publishes on this subscription. */
  readonly noLocal?: boolean | undefined
  /** MQTT 5: keep the retain flag as published (instead of clearing it on live messages). */
  readonly retainAsPublished?: boolean | undefined
  /** MQTT 5: 0 send retained messages on subscribe (default), 1 only for a new subscription, 2 never. */
  readonly retainHandling?: 0 | 1 | 2 | undefined
  /** Messages buffered for this stream before its strategy applies. Default 1024. */
  readonly bufferSize?: number | undefined
  /**
   * What a full buffer does (default `"suspend"`). `"suspend"`: QoS 1/2
   * messages wait, unacknowledged, so the broker slows down (its inflight
   * window fills); QoS 0 beyond another `bufferSize` waiting is dropped.
   * `"dropping"`: the new message is dropped. `"sliding"`: the oldest buffered
   * message is dropped. Drops are counted in `stats.droppedIncoming`.
   */
  readonly strategy?: Strategy | undefined
}

/**
 * A snapshot of the client's counters.
 *
 * @since 0.1.0
 */
export interface MqttStats {
  readonly connected: boolean
  /** Publish requests waiting in the queue. */
  readonly queueSize: number
  readonly capacity: number
  readonly strategy: Strategy
  /** QoS 1/2 publishes sent and awaiting acknowledgement. */
  readonly inflight: number
  /** Messages dropped by the queue strategy (both kinds). */
  readonly dropped: number
  /** Dropped by `"dropping"` (the newest). */
  readonly droppedNewest: number
  /** Evicted by `"sliding"` (the oldest). */
  readonly droppedOldest: number
  /** QoS 0 dropped while offline (`queueQoS0WhileOffline: false`). */
  readonly droppedOffline: number
  /** Queued messages dropped by `messageExpiry`. */
  readonly expired: number
  /** Incoming messages dropped by a subscription buffer's strategy (or refused as invalid UTF-8). */
  readonly droppedIncoming: number
  /** The client identifier in use (assigned by the broker when ours was empty). */
  readonly clientId: string
  /** The broker's CONNACK properties on the current or last connection (MQTT 5). */
  readonly server: ServerProperties
  /** PUBLISH packets written to the socket (resends included). */
  readonly sent: number
  /** PUBLISH packets received from the broker. */
  readonly received: number
  /** Successful connections so far. */
  readonly connections: number
}

/**
 * Options of `disconnect`.
 *
 * @since 0.1.0
 */
export interface DisconnectOptions {
  /**
   * Wait until the queue and the inflight window are empty (every accepted
   * message acknowledged) before sending DISCONNECT. Default false: pending
   * receipts fail with `ClientClosed`.
   */
  readonly drain?: boolean | undefined
  /** Bound on the drain. Default 30 seconds; what is still pending then fails with `ClientClosed`. */
  readonly timeout?: Duration.Input | undefined
  /** MQTT 5 DISCONNECT reason code, e.g. 0x04 to have the broker publish the will anyway. Default 0. */
  readonly reasonCode?: number | undefined
  /** MQTT 5: change the session expiry interval at disconnection (seconds). */
  readonly sessionExpiryInterval?: number | undefined
}

/**
 * A request for `request`: published with a Response Topic and Correlation
 * Data; the response is the first message on the response topic with the
 * same Correlation Data.
 *
 * @since 0.1.0
 */
export interface RequestMessage {
  readonly topic: string
  readonly payload: string | Uint8Array
  /** Default 1. */
  readonly qos?: QoS | undefined
  /** Default 10 seconds. */
  readonly timeout?: Duration.Input | undefined
  readonly properties?: Omit<PublishProperties, "responseTopic" | "correlationData"> | undefined
}

/**
 * How a transport package lets the core follow a broker's Server Reference
 * (MQTT 5 "use another server" / "server moved").
 *
 * @since 0.1.0
 */
export interface TransportOptions {
  /** A socket to the broker a Server Reference names, or undefined to ignore it. */
  readonly redirect?: ((serverReference: string) => Effect.Effect<Socket.Socket | undefined>) | undefined
}

/**
 * The client's interface.
 *
 * @since 0.1.0
 */
export interface Service {
  /** The client identifier sent in CONNECT. */
  readonly clientId: string
  /**
   * Queues a message and returns its receipt. With strategy `"suspend"` the
   * calling fiber waits while the queue is full (interruptible: an
   * interrupted call queues nothing). With `"dropping"`/`"sliding"` it never
   * waits: a dropped message's receipt fails with `MessageDropped`.
   * Invalid input fails at once and queues nothing.
   *
   * The effect is lazy: it queues the message each time it runs, never
   * before. The message's fields are read when `publish` is called, so
   * changing the object afterwards does not change what is sent (a payload
   * `Uint8Array` is copied when the effect runs).
   */
  readonly publish: (message: PublishMessage) => Effect.Effect<PublishReceipt, InvalidTopic | InvalidOptions | ClientClosed>
  /**
   * Like `publish` but never waits: with `"suspend"` or `"dropping"` a full
   * queue fails with `QueueFull`; with `"sliding"` the oldest message makes room.
   */
  readonly tryPublish: (
    message: PublishMessage
  ) => Effect.Effect<PublishReceipt, QueueFull | InvalidTopic | InvalidOptions | ClientClosed>
  /** `publish`, then wait for the receipt. */
  readonly publishAndWait: (message: PublishMessage) => Effect.Effect<void, MqttError>
  /**
   * A stream of the messages matching `filter` (or any of `filters`). SUBSCRIBE
   * is sent when the stream starts, UNSUBSCRIBE when it ends. A refused
   * subscription fails the stream with `SubscribeRejected`. Messages go
   * through a bounded buffer (`bufferSize`, `strategy`); QoS 1/2 messages are
   * acknowledged to the broker only once they are in it.
   */
  readonly subscribe: (
    filter: string | ReadonlyArray<string>,
    options?: SubscribeOptions
  ) => Stream.Stream<MqttMessage, MqttError>
  /**
   * Subscribes now and waits for the SUBACK; the returned stream yields the
   * matching messages until the scope closes, which sends UNSUBSCRIBE. Use it
   * when you must know the subscription is active before going on (e.g.
   * before publishing what it should receive).
   *
   * The stream reads the subscription's buffer in batches and is meant for one
   * consumer for the subscription's lifetime: a run that stops early (e.g.
   * `Stream.take`) discards the rest of the batch it had pulled.
   */
  readonly subscribeScoped: (
    filter: string | ReadonlyArray<string>,
    options?: SubscribeOptions
  ) => Effect.Effect<Stream.Stream<MqttMessage, MqttError>, MqttError, Scope.Scope>
  /** Connection events and dropped messages, from the moment of subscription. */
  readonly events: Stream.Stream<MqttEvent>
  /** The current counters. */
  readonly stats: Effect.Effect<MqttStats>
  /**
   * Closes the client now (closing its scope does the same): sends DISCONNECT
   * when connected, ends subscription streams, fails pending receipts with
   * `ClientClosed`. With `drain`, first waits (bounded) until everything
   * accepted has been acknowledged.
   */
  readonly disconnect: (options?: DisconnectOptions) => Effect.Effect<void>
  /**
   * MQTT 5 request/response: publishes `message` with a Response Topic (one per
   * client, subscribed on first use) and random Correlation Data, and
   * succeeds with the response, or fails with `RequestTimeout`.
   */
  readonly request: (message: RequestMessage) => Effect.Effect<MqttMessage, MqttError>
  /**
   * The responder side of `request`: publishes `response` to the request's
   * Response Topic with its Correlation Data. Fails with `InvalidOptions`
   * when the request has no Response Topic.
   */
  readonly reply: (
    request: MqttMessage,
    response: Omit<PublishMessage, "topic">
  ) => Effect.Effect<PublishReceipt, InvalidTopic | InvalidOptions | ClientClosed>
  /**
   * MQTT 5 enhanced re-authentication: sends AUTH (0x19) with the
   * `authenticate` method and data, answers the broker's challenges, and
   * succeeds when the broker confirms.
   */
  readonly reauthenticate: Effect.Effect<void, MqttError>
}

/**
 * The client as a service.
 *
 * @since 0.1.0
 */
export class MqttClient extends Context.Service<MqttClient, Service>()("@effect-mqtt/core/MqttClient") {}

/**
 * Builds a client over the `Socket` in the context; the event loop lives in
 * the current scope. Fails with `InvalidOptions` when an option is invalid.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { MqttClient } from "@effect-mqtt/core"
 *
 * // provide a Socket.Socket, e.g. with @effect-mqtt/node's NodeMqttClient.layer
 * const client = MqttClient.make({ clientId: "demo", keepAlive: 30 })
 * ```
 *
 * @since 0.1.0
 */
export const make: (
  options?: MqttClientOptions
) => Effect.Effect<Service, InvalidOptions, Scope.Scope | Socket.Socket> = internal.make

/**
 * Builds a client that tries `sockets` in turn (one per broker address): each
 * connection attempt uses the next one.
 *
 * @since 0.1.0
 */
export const makeWithSockets: (
  options: MqttClientOptions,
  sockets: readonly [Socket.Socket, ...Array<Socket.Socket>],
  transport?: TransportOptions
) => Effect.Effect<Service, InvalidOptions, Scope.Scope> = internal.makeWithSockets

/**
 * A layer of the client over the `Socket` in the context.
 *
 * @since 0.1.0
 */
export const layer = (options?: MqttClientOptions): Layer.Layer<MqttClient, InvalidOptions, Socket.Socket> =>
  Layer.effect(MqttClient, make(options))
