/**
 * Client options: what a user passes to `MqttClient.make`, how it is validated
 * (with `Schema`, into a typed `InvalidOptions`), and the defaults.
 *
 * @example
 * ```ts
 * import { Redacted } from "effect"
 * import type { MqttOptions } from "@effect-mqtt/core"
 *
 * const options: MqttOptions.MqttClientOptions = {
 *   clientId: "sensor-17",
 *   protocolVersion: 5,
 *   keepAlive: 30,
 *   username: "sensor",
 *   password: Redacted.make("s3cret"),
 *   capacity: 256,
 *   strategy: "sliding"
 * }
 * ```
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import { type ConnectionRefused, InvalidOptions } from "./MqttError.ts"
import type { UserProperties } from "./MqttMessage.ts"
import { topicNameProblem } from "./Topic.ts"

/**
 * What `publish` does when the request queue is full; see the README's strategy guide.
 *
 * - `"suspend"`: the caller's fiber waits for room (back-pressure).
 * - `"dropping"`: the new message is dropped and counted.
 * - `"sliding"`: the oldest queued message is evicted and counted.
 *
 * @since 0.1.0
 */
export type Strategy = "suspend" | "dropping" | "sliding"

/**
 * MQTT protocol level: 4 is MQTT 3.1.1, 5 is MQTT 5.0.
 *
 * @since 0.1.0
 */
export type ProtocolVersion = 4 | 5

/**
 * MQTT 5 will properties.
 *
 * @since 0.1.0
 */
export interface WillProperties {
  /** Seconds the broker waits after the connection is lost before publishing the will. */
  readonly willDelayInterval?: number | undefined
  readonly payloadFormatIndicator?: boolean | undefined
  readonly messageExpiryInterval?: number | undefined
  readonly contentType?: string | undefined
  readonly responseTopic?: string | undefined
  readonly correlationData?: Uint8Array | undefined
  readonly userProperties?: UserProperties | undefined
}

/**
 * MQTT 5 CONNECT properties the application may set. Authentication
 * properties come from the `authenticate` option.
 *
 * @since 0.1.0
 */
export interface ConnectProperties {
  /** Receive Maximum: most QoS 1/2 messages the broker may have unacknowledged towards us (enforced). */
  readonly receiveMaximum?: number | undefined
  /** Largest packet we accept, in bytes (enforced: a larger one ends the connection with 0x95). */
  readonly maximumPacketSize?: number | undefined
  /** Most topic aliases the broker may use towards us. */
  readonly topicAliasMaximum?: number | undefined
  /** Ask the broker for Response Information (used by `request`). */
  readonly requestResponseInformation?: boolean | undefined
  /** Whether the broker may send reason strings and user properties on failures (default true). */
  readonly requestProblemInformation?: boolean | undefined
  readonly userProperties?: UserProperties | undefined
}

/**
 * MQTT 5 enhanced authentication (AUTH packets): a method, optional initial
 * data, and an effect that answers each challenge the broker sends.
 *
 * @since 0.1.0
 */
export interface Authenticate {
  readonly method: string
  readonly data?: Uint8Array | undefined
  /** Answers a broker challenge (AUTH, reason 0x18) with the data to send back. */
  readonly respond: (challenge: Uint8Array | undefined) => Effect.Effect<Uint8Array | undefined, unknown>
}

/**
 * The last will, published by the broker when the client disappears without DISCONNECT.
 *
 * @since 0.1.0
 */
export interface Will {
  readonly topic: string
  readonly payload: string | Uint8Array
  readonly qos?: 0 | 1 | 2 | undefined
  readonly retain?: boolean | undefined
  /** MQTT 5 will properties. */
  readonly properties?: WillProperties | undefined
}

/**
 * Options accepted by `MqttClient.make`.
 *
 * @since 0.1.0
 */
export interface MqttClientOptions {
  /** Client identifier; a random `effect-mqtt-…` id is generated when absent. */
  readonly clientId?: string | undefined
  /** 4 (MQTT 3.1.1, the default) or 5 (MQTT 5.0). */
  readonly protocolVersion?: ProtocolVersion | undefined
  /** Keep-alive in seconds (0 disables it). Default 60. */
  readonly keepAlive?: number | undefined
  /** MQTT 3.1.1 clean session (default true). For v5 this is the same flag as `cleanStart`. */
  readonly cleanSession?: boolean | undefined
  /** MQTT 5 clean start; an alias of `cleanSession`. */
  readonly cleanStart?: boolean | undefined
  /** MQTT 5 session expiry interval in seconds. */
  readonly sessionExpiryInterval?: number | undefined
  readonly username?: string | undefined
  /** The password is kept `Redacted`: it never shows in logs, errors or `toString`. */
  readonly password?: Redacted.Redacted<string | Uint8Array> | undefined
  readonly will?: Will | undefined
  /** Bound on opening the transport plus the CONNECT/CONNACK handshake. Default 10 seconds. */
  readonly connectTimeout?: Duration.Input | undefined
  /** Capacity of the publish request queue. Default 1024. */
  readonly capacity?: number | undefined
  /** What a full queue does to `publish`. Default `"suspend"`. */
  readonly strategy?: Strategy | undefined
  /**
   * Most QoS 1/2 publishes awaiting acknowledgement at once. Default 20: that
   * is mosquitto's default receive maximum, and an MQTT 3.1.1 client cannot
   * learn it (mosquitto closes the connection of a 3.1.1 client that sends a
   * 21st QoS 2 message). With MQTT 5 the broker's Receive Maximum also caps it.
   */
  readonly maxInflight?: number | undefined
  /**
   * When to try again after a connection is lost: a `Schedule` whose delays
   * space the attempts, or `false` to stay down. Default: exponential from
   * 100 ms, doubling, capped at 30 s, jittered, unlimited.
   */
  readonly reconnect?: Schedule.Schedule<unknown, unknown> | false | undefined
  /** MQTT 5 CONNECT properties. */
  readonly properties?: ConnectProperties | undefined
  /** MQTT 5 enhanced authentication. */
  readonly authenticate?: Authenticate | undefined
  /**
   * MQTT 5: give each topic a short alias automatically (least recently used
   * first, within the broker's Topic Alias Maximum), so repeated topics cost
   * two bytes. Reset on every connection. Default false.
   */
  readonly topicAliases?: boolean | undefined
  /**
   * Whether to keep retrying after the broker refused the connection. Default:
   * only for "server unavailable" / "server busy" / quota and rate refusals;
   * bad credentials or a rejected identifier stop the client.
   */
  readonly retryRefused?: ((error: ConnectionRefused) => boolean) | undefined
  /**
   * When the broker did not keep the session (CONNACK session-present 0):
   * `"republish"` (default) sends unacknowledged QoS 1/2 messages again;
   * `"fail"` fails their receipts with `SessionLost`.
   */
  readonly onSessionLost?: "republish" | "fail" | undefined
  /**
   * Queue QoS 0 publishes while disconnected (default true). When false, a QoS 0
   * publish while offline is dropped at once (receipt: `MessageDropped`, reason
   * `"offline"`) and counted.
   */
  readonly queueQoS0WhileOffline?: boolean | undefined
  /**
   * Drop a queued message that could not be sent within this time, with
   * `MessageExpired`, instead of sending it late. For MQTT 5 it also sets the
   * Message Expiry Interval property (whole seconds, rounded up) unless the
   * message sets its own.
   */
  readonly messageExpiry?: Duration.Input | undefined
}

/**
 * Options after validation, with every default filled in.
 *
 * @since 0.1.0
 */
export interface ResolvedOptions {
  readonly clientId: string
  readonly protocolVersion: ProtocolVersion
  readonly keepAlive: number
  readonly clean: boolean
  readonly sessionExpiryInterval: number | undefined
  readonly username: string | undefined
  readonly password: Redacted.Redacted<string | Uint8Array> | undefined
  readonly will: Will | undefined
  readonly connectTimeout: Duration.Duration
  readonly capacity: number
  readonly strategy: Strategy
  readonly maxInflight: number
  readonly reconnect: Schedule.Schedule<unknown, unknown> | false
  readonly properties: ConnectProperties | undefined
  readonly authenticate: Authenticate | undefined
  readonly topicAliases: boolean
  readonly retryRefused: (error: ConnectionRefused) => boolean
  readonly onSessionLost: "republish" | "fail"
  readonly queueQoS0WhileOffline: boolean
  readonly messageExpiry: Duration.Duration | undefined
}

/**
 * The default `retryRefused`: retry when the refusal says the server is
 * unavailable, busy, over quota or rate-limiting; stop otherwise.
 *
 * @since 0.1.0
 */
export const retryTransientRefusals = (error: ConnectionRefused): boolean =>
  error.code === 3 || error.code === 0x88 || error.code === 0x89 || error.code === 0x97 || error.code === 0x9f

const Qos = Schema.Literals([0, 1, 2])
const UInt16 = Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 65_535 }))
const UInt32 = Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 4_294_967_295 }))
const Payload = Schema.Union([Schema.String, Schema.Uint8Array])
const UserPropertiesSchema = Schema.Record(Schema.String, Schema.Union([Schema.String, Schema.Array(Schema.String)]))

const WillPropertiesSchema = Schema.Struct({
  willDelayInterval: Schema.optional(UInt32),
  payloadFormatIndicator: Schema.optional(Schema.Boolean),
  messageExpiryInterval: Schema.optional(UInt32),
  contentType: Schema.optional(Schema.String),
  responseTopic: Schema.optional(Schema.String),
  correlationData: Schema.optional(Schema.Uint8Array),
  userProperties: Schema.optional(UserPropertiesSchema)
})

const ConnectPropertiesSchema = Schema.Struct({
  receiveMaximum: Schema.optional(Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 65_535 }))),
  maximumPacketSize: Schema.optional(Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 268_435_460 }))),
  topicAliasMaximum: Schema.optional(UInt16),
  requestResponseInformation: Schema.optional(Schema.Boolean),
  requestProblemInformation: Schema.optional(Schema.Boolean),
  userProperties: Schema.optional(UserPropertiesSchema)
})

/** The plain-data part of the options, checked by `Schema`. */
const PlainOptions = Schema.Struct({
  clientId: Schema.optional(Schema.String.check(Schema.isMaxLength(65_535))),
  protocolVersion: Schema.optional(Schema.Literals([4, 5])),
  keepAlive: Schema.optional(UInt16),
  cleanSession: Schema.optional(Schema.Boolean),
  cleanStart: Schema.optional(Schema.Boolean),
  sessionExpiryInterval: Schema.optional(UInt32),
  username: Schema.optional(Schema.String),
  will: Schema.optional(Schema.Struct({
    topic: Schema.String,
    payload: Payload,
    qos: Schema.optional(Qos),
    retain: Schema.optional(Schema.Boolean),
    properties: Schema.optional(WillPropertiesSchema)
  })),
  capacity: Schema.optional(Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 16_777_216 }))),
  strategy: Schema.optional(Schema.Literals(["suspend", "dropping", "sliding"])),
  maxInflight: Schema.optional(Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 65_535 }))),
  properties: Schema.optional(ConnectPropertiesSchema),
  topicAliases: Schema.optional(Schema.Boolean),
  onSessionLost: Schema.optional(Schema.Literals(["republish", "fail"])),
  queueQoS0WhileOffline: Schema.optional(Schema.Boolean)
})

const decodePlain = Schema.decodeUnknownEffect(PlainOptions)

const randomClientId = () => {
  const bytes = new Uint8Array(8)
  globalThis.crypto.getRandomValues(bytes)
  let hex = ""
  for (const b of bytes) hex += b.toString(16).padStart(2, "0")
  return `effect-mqtt-${hex}`
}

/**
 * The default reconnection schedule: exponential from 100 ms, doubling, each
 * delay capped at 30 s, jittered (80%–120%), unlimited.
 *
 * @since 0.1.0
 */
export const defaultReconnect: Schedule.Schedule<unknown, unknown> = Schedule.exponential("100 millis", 2).pipe(
  Schedule.modifyDelay(({ duration }) => Effect.succeed(Duration.min(duration, Duration.seconds(30)))),
  Schedule.jittered
)

const fail = (reason: string) => Effect.fail(new InvalidOptions({ reason }))

/**
 * Validates `options` and fills in the defaults. Never throws: every problem
 * is an `InvalidOptions` naming the field. The password is not looked at, so
 * it cannot leak into the error.
 *
 * @since 0.1.0
 */
export const resolve = (options: MqttClientOptions): Effect.Effect<ResolvedOptions, InvalidOptions> =>
  Effect.gen(function*() {
    const { password, reconnect, connectTimeout, retryRefused, messageExpiry, authenticate, ...plain } = options
    const checked = yield* decodePlain(plain).pipe(
      Effect.mapError((error) => new InvalidOptions({ reason: error.message }))
    )
    if (password !== undefined && !Redacted.isRedacted(password)) {
      return yield* fail("password must be a Redacted value (Redacted.make(...))")
    }
    if (password !== undefined && checked.username === undefined && (checked.protocolVersion ?? 4) === 4) {
      return yield* fail("MQTT 3.1.1 does not allow a password without a username")
    }
    if (
      checked.cleanSession !== undefined && checked.cleanStart !== undefined &&
      checked.cleanSession !== checked.cleanStart
    ) {
      return yield* fail("cleanSession and cleanStart are the same flag and disagree")
    }
    if (checked.will !== undefined) {
      const problem = topicNameProblem(checked.will.topic)
      if (problem !== undefined) return yield* fail(`will.topic: ${problem}`)
    }
    if (checked.sessionExpiryInterval !== undefined && checked.protocolVersion !== 5) {
      return yield* fail("sessionExpiryInterval needs protocolVersion 5")
    }
    if (checked.properties !== undefined && checked.protocolVersion !== 5) {
      return yield* fail("properties need protocolVersion 5")
    }
    let timeout = Duration.seconds(10)
    if (connectTimeout !== undefined) {
      const decoded = Duration.fromInput(connectTimeout)
      if (Option.isNone(decoded) || Duration.toMillis(decoded.value) <= 0) {
        return yield* fail("connectTimeout must be a positive duration")
      }
      timeout = decoded.value
    }
    let expiry: Duration.Duration | undefined
    if (messageExpiry !== undefined) {
      const decoded = Duration.fromInput(messageExpiry)
      if (Option.isNone(decoded) || Duration.toMillis(decoded.value) <= 0) {
        return yield* fail("messageExpiry must be a positive duration")
      }
      expiry = decoded.value
    }
    if (authenticate !== undefined) {
      if (checked.protocolVersion !== 5) return yield* fail("authenticate (enhanced authentication) needs protocolVersion 5")
      if (typeof authenticate.method !== "string" || authenticate.method.length === 0) {
        return yield* fail("authenticate.method must be a non-empty string")
      }
      if (typeof authenticate.respond !== "function") return yield* fail("authenticate.respond must be a function")
    }
    if (checked.topicAliases === true && checked.protocolVersion !== 5) {
      return yield* fail("topicAliases needs protocolVersion 5")
    }
    if (checked.will?.properties !== undefined && checked.protocolVersion !== 5) {
      return yield* fail("will.properties need protocolVersion 5")
    }
    if (retryRefused !== undefined && typeof retryRefused !== "function") {
      return yield* fail("retryRefused must be a function")
    }
    if (reconnect !== undefined && reconnect !== false && !Schedule.isSchedule(reconnect)) {
      return yield* fail("reconnect must be a Schedule or false")
    }
    const clientId = checked.clientId ?? randomClientId()
    if (clientId.length === 0 && (checked.cleanSession ?? checked.cleanStart) === false && checked.protocolVersion !== 5) {
      return yield* fail("an empty clientId needs a clean session in MQTT 3.1.1")
    }
    return {
      clientId,
      protocolVersion: checked.protocolVersion ?? 4,
      keepAlive: checked.keepAlive ?? 60,
      clean: checked.cleanSession ?? checked.cleanStart ?? true,
      sessionExpiryInterval: checked.sessionExpiryInterval,
      username: checked.username,
      password,
      will: checked.will,
      connectTimeout: timeout,
      capacity: checked.capacity ?? 1024,
      strategy: checked.strategy ?? "suspend",
      maxInflight: checked.maxInflight ?? 20,
      reconnect: reconnect ?? defaultReconnect,
      properties: checked.properties,
      authenticate,
      topicAliases: checked.topicAliases ?? false,
      retryRefused: retryRefused ?? retryTransientRefusals,
      onSessionLost: checked.onSessionLost ?? "republish",
      queueQoS0WhileOffline: checked.queueQoS0WhileOffline ?? true,
      messageExpiry: expiry
    } satisfies ResolvedOptions
  })
