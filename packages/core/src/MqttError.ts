/**
 * Every error the client can put in an error channel. Each one is a
 * `Schema.TaggedError`: match on `_tag` with `Effect.catchTag`, read a
 * human-readable `message`.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { MqttClient } from "@effect-mqtt/core"
 *
 * const program = Effect.gen(function*() {
 *   const client = yield* MqttClient.MqttClient
 *   yield* client.tryPublish({ topic: "a/b", payload: "hi" }).pipe(
 *     Effect.catchTag("QueueFull", (e) => Effect.logWarning(e.message))
 *   )
 * })
 * ```
 *
 * @since 0.1.0
 */
import { Schema } from "effect"

/**
 * `tryPublish` found the request queue full (strategy `"suspend"` or `"dropping"`).
 *
 * @since 0.1.0
 */
export class QueueFull extends Schema.TaggedError<QueueFull>()("QueueFull", {
  capacity: Schema.Number
}) {
  override get message() {
    return `The request queue is full (capacity ${this.capacity})`
  }
}

/**
 * A message was dropped before it was sent: by the queue strategy
 * (`"dropping"` drops the newest, `"sliding"` evicts the oldest), or because it
 * was QoS 0 and the client was offline with `queueQoS0WhileOffline: false`.
 *
 * @since 0.1.0
 */
export class MessageDropped extends Schema.TaggedError<MessageDropped>()("MessageDropped", {
  topic: Schema.String,
  reason: Schema.Literals(["dropping", "sliding", "offline"])
}) {
  override get message() {
    switch (this.reason) {
      case "sliding":
        return `Message to "${this.topic}" was evicted from the full queue by a newer one (strategy "sliding")`
      case "dropping":
        return `Message to "${this.topic}" was dropped because the queue was full (strategy "dropping")`
      case "offline":
        return `QoS 0 message to "${this.topic}" was dropped because the client was offline (queueQoS0WhileOffline: false)`
    }
  }
}

/**
 * A queued message waited longer than `messageExpiry` and was not sent.
 *
 * @since 0.1.0
 */
export class MessageExpired extends Schema.TaggedError<MessageExpired>()("MessageExpired", {
  topic: Schema.String,
  expiryMillis: Schema.Number
}) {
  override get message() {
    return `Message to "${this.topic}" expired after waiting ${this.expiryMillis} ms in the queue`
  }
}

/**
 * The broker did not keep the session (CONNACK session-present was 0), and the
 * client was told (`onSessionLost: "fail"`) not to republish what it had not
 * seen acknowledged.
 *
 * @since 0.1.0
 */
export class SessionLost extends Schema.TaggedError<SessionLost>()("SessionLost", {
  topic: Schema.String
}) {
  override get message() {
    return `The broker lost the session before acknowledging the message to "${this.topic}"`
  }
}

/**
 * A topic name or topic filter breaks the MQTT rules.
 *
 * @since 0.1.0
 */
export class InvalidTopic extends Schema.TaggedError<InvalidTopic>()("InvalidTopic", {
  topic: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `Invalid topic ${JSON.stringify(this.topic.length > 80 ? this.topic.slice(0, 80) + "…" : this.topic)}: ${this.reason}`
  }
}

/**
 * A client option, or a field of a publish/subscribe request, is invalid.
 *
 * @since 0.1.0
 */
export class InvalidOptions extends Schema.TaggedError<InvalidOptions>()("InvalidOptions", {
  reason: Schema.String
}) {
  override get message() {
    return `Invalid options: ${this.reason}`
  }
}

/**
 * The broker refused the connection in its CONNACK.
 *
 * `code` is the 3.1.1 return code (1..5) or the v5 reason code (>= 0x80).
 *
 * @since 0.1.0
 */
export class ConnectionRefused extends Schema.TaggedError<ConnectionRefused>()("ConnectionRefused", {
  code: Schema.Number,
  reason: Schema.String
}) {
  override get message() {
    return `The broker refused the connection: ${this.reason} (code ${this.code})`
  }
}

/**
 * The transport or the CONNECT/CONNACK handshake took longer than `connectTimeout`.
 *
 * @since 0.1.0
 */
export class ConnectTimeout extends Schema.TaggedError<ConnectTimeout>()("ConnectTimeout", {
  timeoutMillis: Schema.Number
}) {
  override get message() {
    return `No CONNACK within ${this.timeoutMillis} ms`
  }
}

/**
 * The connection failed: the socket could not be opened, broke, or the broker
 * stopped answering keep-alive pings.
 *
 * @since 0.1.0
 */
export class ConnectionLost extends Schema.TaggedError<ConnectionLost>()("ConnectionLost", {
  reason: Schema.String,
  cause: Schema.optional(Schema.Defect())
}) {
  override get message() {
    return `Connection lost: ${this.reason}`
  }
}

/**
 * The broker sent something that breaks the protocol (a malformed or unexpected
 * packet). The connection is closed and the client reconnects.
 *
 * @since 0.1.0
 */
export class ProtocolError extends Schema.TaggedError<ProtocolError>()("ProtocolError", {
  reason: Schema.String
}) {
  override get message() {
    return `Protocol error: ${this.reason}`
  }
}

/**
 * The broker answered a QoS 1/2 publish with a failure reason code (v5, >= 0x80).
 *
 * @since 0.1.0
 */
export class PublishRejected extends Schema.TaggedError<PublishRejected>()("PublishRejected", {
  topic: Schema.String,
  code: Schema.Number,
  reason: Schema.optional(Schema.String)
}) {
  override get message() {
    return `The broker rejected the publish to "${this.topic}" with reason code 0x${this.code.toString(16)}${
      this.reason ? `: ${this.reason}` : ""
    }`
  }
}

/**
 * The broker refused a subscription (SUBACK failure code 0x80 in 3.1.1, any code >= 0x80 in v5).
 *
 * @since 0.1.0
 */
export class SubscribeRejected extends Schema.TaggedError<SubscribeRejected>()("SubscribeRejected", {
  filter: Schema.String,
  code: Schema.Number
}) {
  override get message() {
    return `The broker rejected the subscription to "${this.filter}" with code 0x${this.code.toString(16)}`
  }
}

/**
 * The client was closed (its scope ended) before the operation completed.
 *
 * @since 0.1.0
 */
export class ClientClosed extends Schema.TaggedError<ClientClosed>()("ClientClosed", {
  /** Why the client stopped, when it was not closed by its scope (e.g. a refused connection). */
  reason: Schema.optional(Schema.String)
}) {
  override get message() {
    return this.reason === undefined ? "The MQTT client is closed" : `The MQTT client is closed: ${this.reason}`
  }
}

/**
 * Any error the client reports.
 *
 * @since 0.1.0
 */
export type MqttError =
  | QueueFull
  | MessageDropped
  | MessageExpired
  | SessionLost
  | InvalidTopic
  | InvalidOptions
  | ConnectionRefused
  | ConnectTimeout
  | ConnectionLost
  | ProtocolError
  | PublishRejected
  | SubscribeRejected
  | ClientClosed

/**
 * Errors that end one connection; the event loop reconnects after them
 * (except `ConnectionRefused`, which is reported and retried on the schedule).
 *
 * @since 0.1.0
 */
export type ConnectionError = ConnectionRefused | ConnectTimeout | ConnectionLost | ProtocolError
