/**
 * Building the packets the client sends: a PUBLISH validated and encoded in
 * the caller's fiber (so bad input fails before anything is queued, and the
 * event loop only copies bytes), and the CONNECT packet.
 */
import * as Redacted from "effect/Redacted"
import { InvalidOptions, InvalidTopic } from "../MqttError.ts"
import type { PublishMessage } from "../MqttMessage.ts"
import type { ProtocolVersion, ResolvedOptions } from "../MqttOptions.ts"
import { topicNameProblem } from "../Topic.ts"
import { encode, type Packet, type PublishPacket } from "./codec.ts"
import { PublishRequest } from "./publishRequest.ts"

/** MQTT's largest remaining length (256 MiB - 1). */
const MAX_PAYLOAD = 268_435_455

/**
 * Validates a message and encodes it into a `PublishRequest` (QoS 1/2 with a
 * placeholder packet id, patched when sent). `now` is the enqueue time used by
 * `messageExpiry`.
 */
export const preparePublish = (
  message: PublishMessage,
  version: ProtocolVersion,
  expiryMillis: number | undefined,
  now: number
): PublishRequest | InvalidTopic | InvalidOptions => {
  if (typeof message !== "object" || message === null) return new InvalidOptions({ reason: "a message must be an object" })
  const { topic, payload } = message
  const qos = message.qos ?? 0
  if (typeof topic !== "string") return new InvalidOptions({ reason: "topic must be a string" })
  const problem = topicNameProblem(topic)
  if (problem !== undefined) return new InvalidTopic({ topic, reason: problem })
  if (qos !== 0 && qos !== 1 && qos !== 2) return new InvalidOptions({ reason: `qos must be 0, 1 or 2, got ${String(qos)}` })
  if (typeof payload !== "string" && !(payload instanceof Uint8Array)) {
    return new InvalidOptions({ reason: "payload must be a string or a Uint8Array" })
  }
  if (message.retain !== undefined && typeof message.retain !== "boolean") {
    return new InvalidOptions({ reason: "retain must be a boolean" })
  }
  if (message.properties !== undefined && version !== 5) {
    return new InvalidOptions({ reason: "message properties need protocolVersion 5" })
  }
  const body = typeof payload === "string" ? payload : toBuffer(payload)
  if (body.length > MAX_PAYLOAD) return new InvalidOptions({ reason: "payload is larger than MQTT allows (256 MiB)" })
  let properties = message.properties === undefined ? undefined : withBuffers(message.properties) as PublishPacket["properties"]
  if (expiryMillis !== undefined && version === 5 && properties?.messageExpiryInterval === undefined) {
    properties = { ...properties, messageExpiryInterval: Math.ceil(expiryMillis / 1000) }
  }
  const packet = new OutgoingPublish(topic, body, qos, message.retain ?? false, properties) as PublishPacket
  let bytes: Uint8Array
  try {
    bytes = encode(packet, version)
  } catch (error) {
    return new InvalidOptions({ reason: `cannot encode the message: ${error instanceof Error ? error.message : String(error)}` })
  }
  // From here on the payload is the tail of `bytes` (see `payloadOf`): the caller's buffer is not kept, neither
  // while queued nor while in flight, and what is sent is what the caller passed when the effect ran.
  ;(packet as OutgoingPublish).dropPayload(typeof body === "string" ? Buffer.byteLength(body, "utf8") : body.length)
  return new PublishRequest(topic, qos, bytes, packet, now)
}

const NO_PAYLOAD = Buffer.alloc(0)

/** The payload of an encoded PUBLISH: its last bytes (MQTT puts the payload at the end of the packet). */
export const payloadOf = (request: PublishRequest): Buffer => {
  const length = (request.packet as OutgoingPublish).payloadLength
  const { bytes } = request
  return Buffer.from(bytes.buffer, bytes.byteOffset + bytes.length - length, length)
}

/**
 * The PUBLISH a request encodes. A class rather than an object literal, like
 * the other per-message objects: see `DecodedPublish` in codec.ts (V8
 * pretenuring of literals that outlive a young-generation GC, as queued
 * publishes do).
 */
class OutgoingPublish {
  readonly cmd = "publish"
  readonly topic: string
  payload: string | Buffer
  /** The payload's size in bytes, once `payload` is dropped (see `preparePublish`). */
  payloadLength = 0
  readonly qos: 0 | 1 | 2
  readonly retain: boolean
  readonly dup = false
  /** A placeholder for QoS 1/2: the real id is patched into the bytes when sent. */
  readonly messageId: number | undefined
  readonly properties: PublishPacket["properties"]
  constructor(topic: string, payload: string | Buffer, qos: 0 | 1 | 2, retain: boolean, properties: PublishPacket["properties"]) {
    this.topic = topic
    this.payload = payload
    this.qos = qos
    this.retain = retain
    this.messageId = qos > 0 ? 1 : undefined
    this.properties = properties
  }

  dropPayload(length: number): void {
    this.payload = NO_PAYLOAD
    this.payloadLength = length
  }
}

/** mqtt-packet wants `Buffer`s where MQTT has binary data (correlation and authentication data). */
const withBuffers = <P extends { readonly correlationData?: Uint8Array | undefined }>(properties: P): P =>
  properties.correlationData === undefined || Buffer.isBuffer(properties.correlationData)
    ? properties
    : { ...properties, correlationData: toBuffer(properties.correlationData) }

export const toBuffer = (bytes: Uint8Array): Buffer =>
  Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)

/** The CONNECT packet for `options`. */
export const connectPacket = (options: ResolvedOptions): Packet => {
  const properties: Record<string, unknown> = { ...options.properties }
  if (options.sessionExpiryInterval !== undefined) properties.sessionExpiryInterval = options.sessionExpiryInterval
  if (options.authenticate !== undefined) {
    properties.authenticationMethod = options.authenticate.method
    if (options.authenticate.data !== undefined) properties.authenticationData = toBuffer(options.authenticate.data)
  }
  return {
    cmd: "connect",
    protocolId: "MQTT",
    protocolVersion: options.protocolVersion,
    clientId: options.clientId,
    clean: options.clean,
    keepalive: options.keepAlive,
    ...(options.username !== undefined ? { username: options.username } : {}),
    ...(options.password !== undefined ? { password: passwordBytes(options.password) } : {}),
    ...(options.will !== undefined
      ? {
        will: {
          topic: options.will.topic,
          payload: typeof options.will.payload === "string" ? options.will.payload : toBuffer(options.will.payload),
          qos: options.will.qos ?? 0,
          retain: options.will.retain ?? false,
          ...(options.will.properties !== undefined ? { properties: withBuffers(options.will.properties) } : {})
        }
      }
      : {}),
    ...(options.protocolVersion === 5 && Object.keys(properties).length > 0 ? { properties } : {})
  } as Packet
}

const passwordBytes = (password: ResolvedOptions["password"] & {}): Buffer => {
  const value = Redacted.value(password)
  return typeof value === "string" ? Buffer.from(value, "utf8") : toBuffer(value)
}
