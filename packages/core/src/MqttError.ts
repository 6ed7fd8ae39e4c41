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
import * as Schema from "effect/Schema"
import * as ReasonCode from "./ReasonCode.ts"

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
 * Why a TLS handshake failed (see {@link TlsError}).
 *
 * - `"UnknownCA"`: the broker's certificate is not signed by a CA the client
 *   trusts (wrong or missing `ca`, self-signed certificate).
 * - `"HostnameMismatch"`: the certificate is not for the host (or `servername`)
 *   the client connected to.
 * - `"CertificateExpired"` / `"CertificateNotYetValid"`: outside its validity dates.
 * - `"CertificateRevoked"`: the certificate was revoked.
 * - `"InvalidCertificate"`: the certificate is malformed, has a bad signature or
 *   may not be used for a TLS server.
 * - `"ClientCertificateRejected"`: the broker refused the client's certificate,
 *   or required one and got none (mutual TLS).
 * - `"ProtocolMismatch"`: the other end does not speak TLS (a plain MQTT port?)
 *   or no TLS version is acceptable to both.
 * - `"HandshakeFailed"`: any other handshake failure.
 *
 * @example
 * ```ts
 * import type { MqttError } from "@effect-mqtt/core"
 *
 * const hint = (kind: MqttError.TlsFailure): string =>
 *   kind === "UnknownCA" ? "pass the broker's CA as `ca`" : kind
 * ```
 *
 * @since 0.1.0
 */
export type TlsFailure =
  | "UnknownCA"
  | "HostnameMismatch"
  | "CertificateExpired"
  | "CertificateNotYetValid"
  | "CertificateRevoked"
  | "InvalidCertificate"
  | "ClientCertificateRejected"
  | "ProtocolMismatch"
  | "HandshakeFailed"

/**
 * The TLS handshake with the broker failed: its certificate did not verify
 * (unknown CA, host name mismatch, expired…), the broker refused the client
 * certificate, or the two ends could not agree. `kind` says which, `reason`
 * says it in words, `code` is the OpenSSL/Node code (e.g.
 * `"UNABLE_TO_VERIFY_LEAF_SIGNATURE"`).
 *
 * The event loop retries on its schedule like for any connection error, and
 * every failed attempt is reported on `events` as `Disconnected` with this
 * error as the cause, so a misconfiguration never hides behind retries.
 *
 * @example
 * ```ts
 * import { Effect, Stream } from "effect"
 * import { MqttClient } from "@effect-mqtt/core"
 *
 * const watchTls = Effect.gen(function*() {
 *   const client = yield* MqttClient.MqttClient
 *   yield* client.events.pipe(
 *     Stream.runForEach((event) =>
 *       event._tag === "Disconnected" && event.cause._tag === "TlsError"
 *         ? Effect.logError(`${event.cause.kind}: ${event.cause.message}`)
 *         : Effect.void
 *     )
 *   )
 * })
 * ```
 *
 * @since 0.1.0
 */
export class TlsError extends Schema.TaggedError<TlsError>()("TlsError", {
  kind: Schema.Literals([
    "UnknownCA",
    "HostnameMismatch",
    "CertificateExpired",
    "CertificateNotYetValid",
    "CertificateRevoked",
    "InvalidCertificate",
    "ClientCertificateRejected",
    "ProtocolMismatch",
    "HandshakeFailed"
  ]),
  reason: Schema.String,
  code: Schema.optional(Schema.String),
  cause: Schema.optional(Schema.Defect())
}) {
  override get message() {
    return `TLS failed: ${this.reason}${this.code === undefined ? "" : ` (${this.code})`}`
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
  /** The reason string the broker sent, if any. */
  reason: Schema.optional(Schema.String)
}) {
  /** The specification's name of `code`, e.g. `"NotAuthorized"`. */
  get reasonName(): ReasonCode.ReasonName {
    return ReasonCode.name(this.code)
  }
  override get message() {
    return `The broker rejected the publish to "${this.topic}": ${ReasonCode.describe(this.code)} (0x${
      this.code.toString(16)
    })${this.reason ? `: ${this.reason}` : ""}`
  }
}

/**
 * The broker refused a subscription (SUBACK failure code 0x80 in 3.1.1, any code >= 0x80 in v5).
 *
 * @since 0.1.0
 */
export class SubscribeRejected extends Schema.TaggedError<SubscribeRejected>()("SubscribeRejected", {
  filter: Schema.String,
  code: Schema.Number,
  /** The reason string the broker sent, if any (MQTT 5). */
  reason: Schema.optional(Schema.String)
}) {
  /** The specification's name of `code` (MQTT 5; 3.1.1 only has 0x80, `"UnspecifiedError"`). */
  get reasonName(): ReasonCode.ReasonName {
    return ReasonCode.name(this.code)
  }
  override get message() {
    return `The broker rejected the subscription to "${this.filter}": ${ReasonCode.describe(this.code)} (0x${
      this.code.toString(16)
    })${this.reason ? `: ${this.reason}` : ""}`
  }
}

/**
 * The broker closed the connection with a DISCONNECT packet (MQTT 5), with a
 * reason code, maybe a reason string and a server reference (another broker
 * to use). The client reconnects unless the code says it should not.
 *
 * @since 0.1.0
 */
export class ServerDisconnect extends Schema.TaggedError<ServerDisconnect>()("ServerDisconnect", {
  code: Schema.Number,
  reason: Schema.optional(Schema.String),
  serverReference: Schema.optional(Schema.String)
}) {
  /** The specification's name of `code`, e.g. `"SessionTakenOver"`. */
  get reasonName(): ReasonCode.ReasonName {
    return ReasonCode.name(this.code)
  }
  override get message() {
    return `The broker disconnected: ${ReasonCode.describe(this.code)} (0x${this.code.toString(16)})${
      this.reason ? `: ${this.reason}` : ""
    }${this.serverReference ? ` (use ${this.serverReference})` : ""}`
  }
}

/**
 * A publish is larger than the broker accepts (its Maximum Packet Size,
 * MQTT 5); it was not sent.
 *
 * @since 0.1.0
 */
export class PacketTooLarge extends Schema.TaggedError<PacketTooLarge>()("PacketTooLarge", {
  topic: Schema.String,
  size: Schema.Number,
  maximum: Schema.Number
}) {
  override get message() {
    return `The message to "${this.topic}" is ${this.size} bytes; the broker accepts at most ${this.maximum}`
  }
}

/**
 * `request` got no response within its timeout.
 *
 * @since 0.1.0
 */
export class RequestTimeout extends Schema.TaggedError<RequestTimeout>()("RequestTimeout", {
  topic: Schema.String,
  timeoutMillis: Schema.Number
}) {
  override get message() {
    return `No response to the request on "${this.topic}" within ${this.timeoutMillis} ms`
  }
}

/**
 * Enhanced authentication (MQTT 5 AUTH) failed: the `authenticate` handler
 * failed, or the broker used another method.
 *
 * @since 0.1.0
 */
export class AuthenticationFailed extends Schema.TaggedError<AuthenticationFailed>()("AuthenticationFailed", {
  reason: Schema.String
}) {
  override get message() {
    return `Authentication failed: ${this.reason}`
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
  | TlsError
  | ProtocolError
  | PublishRejected
  | SubscribeRejected
  | ServerDisconnect
  | PacketTooLarge
  | RequestTimeout
  | AuthenticationFailed
  | ClientClosed

/**
 * Errors that end one connection; the event loop reconnects after them
 * (except `ConnectionRefused`, which is reported and retried on the schedule).
 *
 * @since 0.1.0
 */
export type ConnectionError =
  | ConnectionRefused
  | ConnectTimeout
  | ConnectionLost
  | TlsError
  | ProtocolError
  | ServerDisconnect
  | AuthenticationFailed
