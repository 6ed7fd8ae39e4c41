/**
 * MQTT 5 reason codes, named as in the specification (§2.4), and the MQTT
 * 3.1.1 CONNACK return codes.
 *
 * @example
 * ```ts
 * import { ReasonCode } from "@effect-mqtt/core"
 *
 * ReasonCode.name(0x87) // "NotAuthorized"
 * ReasonCode.describe(0x97) // "quota exceeded"
 * ReasonCode.isFailure(0x10) // false: "no matching subscribers" is a success
 * ```
 *
 * @since 0.1.0
 */

const table = {
  0x00: ["Success", "success"],
  0x01: ["GrantedQoS1", "granted QoS 1"],
  0x02: ["GrantedQoS2", "granted QoS 2"],
  0x04: ["DisconnectWithWillMessage", "disconnect with will message"],
  0x10: ["NoMatchingSubscribers", "no matching subscribers"],
  0x11: ["NoSubscriptionExisted", "no subscription existed"],
  0x18: ["ContinueAuthentication", "continue authentication"],
  0x19: ["ReAuthenticate", "re-authenticate"],
  0x80: ["UnspecifiedError", "unspecified error"],
  0x81: ["MalformedPacket", "malformed packet"],
  0x82: ["ProtocolError", "protocol error"],
  0x83: ["ImplementationSpecificError", "implementation specific error"],
  0x84: ["UnsupportedProtocolVersion", "unsupported protocol version"],
  0x85: ["ClientIdentifierNotValid", "client identifier not valid"],
  0x86: ["BadUserNameOrPassword", "bad user name or password"],
  0x87: ["NotAuthorized", "not authorized"],
  0x88: ["ServerUnavailable", "server unavailable"],
  0x89: ["ServerBusy", "server busy"],
  0x8a: ["Banned", "banned"],
  0x8b: ["ServerShuttingDown", "server shutting down"],
  0x8c: ["BadAuthenticationMethod", "bad authentication method"],
  0x8d: ["KeepAliveTimeout", "keep alive timeout"],
  0x8e: ["SessionTakenOver", "session taken over"],
  0x8f: ["TopicFilterInvalid", "topic filter invalid"],
  0x90: ["TopicNameInvalid", "topic name invalid"],
  0x91: ["PacketIdentifierInUse", "packet identifier in use"],
  0x92: ["PacketIdentifierNotFound", "packet identifier not found"],
  0x93: ["ReceiveMaximumExceeded", "receive maximum exceeded"],
  0x94: ["TopicAliasInvalid", "topic alias invalid"],
  0x95: ["PacketTooLarge", "packet too large"],
  0x96: ["MessageRateTooHigh", "message rate too high"],
  0x97: ["QuotaExceeded", "quota exceeded"],
  0x98: ["AdministrativeAction", "administrative action"],
  0x99: ["PayloadFormatInvalid", "payload format invalid"],
  0x9a: ["RetainNotSupported", "retain not supported"],
  0x9b: ["QoSNotSupported", "QoS not supported"],
  0x9c: ["UseAnotherServer", "use another server"],
  0x9d: ["ServerMoved", "server moved"],
  0x9e: ["SharedSubscriptionsNotSupported", "shared subscriptions not supported"],
  0x9f: ["ConnectionRateExceeded", "connection rate exceeded"],
  0xa0: ["MaximumConnectTime", "maximum connect time"],
  0xa1: ["SubscriptionIdentifiersNotSupported", "subscription identifiers not supported"],
  0xa2: ["WildcardSubscriptionsNotSupported", "wildcard subscriptions not supported"]
} as const

/**
 * The name of an MQTT 5 reason code. `0x00` is `"Success"` whatever the
 * packet (the specification also calls it "Normal disconnection" and
 * "Granted QoS 0").
 *
 * @since 0.1.0
 */
export type ReasonName = (typeof table)[keyof typeof table][0] | "Unknown"

const v3ConnackReasons: Record<number, string> = {
  1: "unacceptable protocol version",
  2: "identifier rejected",
  3: "server unavailable",
  4: "bad user name or password",
  5: "not authorized"
}

const entry = (code: number) => (table as Record<number, readonly [ReasonName, string] | undefined>)[code]

/**
 * The specification's name of an MQTT 5 reason code.
 *
 * @since 0.1.0
 */
export const name = (code: number): ReasonName => entry(code)?.[0] ?? "Unknown"

/**
 * A short human description of an MQTT 5 reason code.
 *
 * @since 0.1.0
 */
export const describe = (code: number): string => entry(code)?.[1] ?? `unknown reason code 0x${code.toString(16)}`

/**
 * A human description of an MQTT 3.1.1 CONNACK return code.
 *
 * @since 0.1.0
 */
export const describeV3Connack = (code: number): string => v3ConnackReasons[code] ?? `unknown return code ${code}`

/**
 * Whether an MQTT 5 reason code reports a failure (>= 0x80).
 *
 * @since 0.1.0
 */
export const isFailure = (code: number): boolean => code >= 0x80
