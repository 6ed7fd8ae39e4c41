/**
 * The only place that touches `mqtt-packet`: packet encoding and an
 * incremental decoder that turns a byte stream into packets.
 */
import * as MqttPacket from "mqtt-packet"
import type { ProtocolVersion } from "../MqttOptions.ts"

export type Packet = MqttPacket.Packet
export type PublishPacket = MqttPacket.IPublishPacket
export type ConnectPacket = MqttPacket.IConnectPacket
export type ConnackPacket = MqttPacket.IConnackPacket
export type SubscribePacket = MqttPacket.ISubscribePacket
export type UnsubscribePacket = MqttPacket.IUnsubscribePacket

/** Largest remaining length MQTT can express (four length bytes). */
const MAX_REMAINING_LENGTH = 268_435_455

/** First byte of the acknowledgements the client sends most (PUBREL has its reserved flags set). */
const ackHeader: Partial<Record<Packet["cmd"], number>> = { puback: 0x40, pubrec: 0x50, pubrel: 0x62, pubcomp: 0x70 }

const pingreq = new Uint8Array([0xc0, 0x00])

/**
 * Encodes one packet into the bytes to write. Throws on a packet mqtt-packet
 * cannot encode. The four-byte acknowledgements (and PINGREQ) are written
 * directly: they are most of the traffic at QoS 1/2, and mqtt-packet's
 * general path costs far more than four bytes.
 */
export const encode = (packet: Packet, protocolVersion: ProtocolVersion): Uint8Array => {
  const header = ackHeader[packet.cmd]
  if (
    header !== undefined && !("properties" in packet && packet.properties !== undefined) &&
    ((packet as { reasonCode?: number }).reasonCode ?? 0) === 0
  ) {
    // MQTT 5 §3.4.2.1: a success reason code without properties may be omitted.
    const id = packet.messageId!
    const bytes = new Uint8Array(4)
    bytes[0] = header
    bytes[1] = 2
    bytes[2] = id >> 8
    bytes[3] = id & 0xff
    return bytes
  }
  if (packet.cmd === "pingreq") return pingreq
  if (
    packet.cmd === "publish" && (protocolVersion === 4 || packet.properties === undefined) &&
    (packet.qos === 0 || packet.messageId !== undefined)
  ) {
    return encodePublish(packet, protocolVersion)
  }
  return MqttPacket.generate(packet, { protocolVersion })
}

const varintLength = (n: number) => (n < 128 ? 1 : n < 16_384 ? 2 : n < 2_097_152 ? 3 : 4)

/** A PUBLISH without MQTT 5 properties: header, topic, packet id, payload, in one allocation. */
const encodePublish = (packet: PublishPacket, protocolVersion: ProtocolVersion): Uint8Array => {
  const topicLength = Buffer.byteLength(packet.topic, "utf8")
  const payload = packet.payload
  const payloadLength = typeof payload === "string" ? Buffer.byteLength(payload, "utf8") : payload.length
  const remaining = 2 + topicLength + (packet.qos > 0 ? 2 : 0) + (protocolVersion === 5 ? 1 : 0) + payloadLength
  if (topicLength > 65_535 || remaining > MAX_REMAINING_LENGTH) return MqttPacket.generate(packet, { protocolVersion })
  const bytes = Buffer.allocUnsafe(1 + varintLength(remaining) + remaining)
  bytes[0] = 0x30 | (packet.dup ? 0x08 : 0) | (packet.qos << 1) | (packet.retain ? 0x01 : 0)
  let at = 1
  let rest = remaining
  do {
    let digit = rest % 128
    rest = Math.floor(rest / 128)
    if (rest > 0) digit |= 0x80
    bytes[at++] = digit
  } while (rest > 0)
  bytes[at++] = topicLength >> 8
  bytes[at++] = topicLength & 0xff
  at += bytes.write(packet.topic, at, "utf8")
  if (packet.qos > 0) {
    const id = packet.messageId!
    bytes[at++] = id >> 8
    bytes[at++] = id & 0xff
  }
  if (protocolVersion === 5) bytes[at++] = 0 // no properties
  if (typeof payload === "string") bytes.write(payload, at, "utf8")
  else bytes.set(payload, at)
  return bytes
}

export interface Decoder {
  /** Feeds bytes; calls `onPacket` for each complete packet, `onError` once for malformed input. */
  readonly push: (chunk: Uint8Array) => void
}


const ackCmd: Record<number, "puback" | "pubrec" | "pubrel" | "pubcomp"> = { 4: "puback", 5: "pubrec", 6: "pubrel", 7: "pubcomp" }

/**
 * The packets that make up nearly all traffic (PUBLISH without MQTT 5
 * properties, the two-byte acknowledgements, PINGRESP), decoded directly from
 * one complete frame; `undefined` sends the frame to mqtt-packet.
 */
const decodeFast = (frame: Buffer, bodyStart: number, version: ProtocolVersion): Packet | undefined => {
  const first = frame[0]
  const type = first >> 4
  const length = frame.length - bodyStart
  if (type >= 4 && type <= 7) {
    // PUBREL must carry flags 0b0010, the others 0: anything else goes to mqtt-packet to be refused
    if (length !== 2 || (first & 0x0f) !== (type === 6 ? 2 : 0)) return undefined
    // Shaped like mqtt-packet's own result (PUBREL's flags read as QoS 1; MQTT 5: an absent reason code is 0).
    return {
      cmd: ackCmd[type],
      messageId: (frame[bodyStart] << 8) | frame[bodyStart + 1],
      qos: type === 6 ? 1 : 0,
      dup: false,
      retain: false,
      length,
      ...(version === 5 ? { reasonCode: 0 } : {})
    } as Packet
  }
  if (type === 13 && length === 0 && (first & 0x0f) === 0) return { cmd: "pingresp", length } as Packet
  if (type !== 3) return undefined
  const qos = (first >> 1) & 3
  if (qos === 3 || length < 2) return undefined
  let at = bodyStart
  const topicLength = (frame[at] << 8) | frame[at + 1]
  at += 2
  if (at + topicLength > frame.length) return undefined
  const topic = frame.toString("utf8", at, at + topicLength)
  at += topicLength
  let messageId: number | undefined
  if (qos > 0) {
    if (at + 2 > frame.length) return undefined
    messageId = (frame[at] << 8) | frame[at + 1]
    at += 2
  }
  if (version === 5) {
    // Properties: only the common "none" case here (a zero length byte).
    if (at >= frame.length || frame[at] !== 0) return undefined
    at += 1
  }
  const packet: PublishPacket = {
    cmd: "publish",
    topic,
    payload: frame.subarray(at),
    qos: qos as 0 | 1 | 2,
    dup: (first & 0x08) !== 0,
    retain: (first & 0x01) !== 0,
    length
  }
  if (messageId !== undefined) packet.messageId = messageId
  return packet
}

/**
 * An incremental decoder. Bytes of a packet may arrive split over several
 * chunks, and one chunk may hold several packets. It frames packets itself
 * (fixed header and remaining length), decodes the common ones directly, and
 * hands every other complete frame to mqtt-packet's parser.
 */
export const makeDecoder = (
  protocolVersion: ProtocolVersion,
  onPacket: (packet: Packet) => void,
  onError: (reason: string) => void
): Decoder => {
  const parser = MqttPacket.parser({ protocolVersion })
  let failed = false
  /** Bytes of an incomplete frame, and how many the frame needs once its header is known (0: unknown yet). */
  let pending: Array<Buffer> = []
  let pendingLength = 0
  let needed = 0

  const fail = (reason: string) => {
    if (failed) return
    failed = true
    onError(reason)
  }
  let fromParser: Packet | undefined
  parser.on("packet", (packet: Packet) => {
    fromParser = packet
  })
  parser.on("error", (error: unknown) => fail(error instanceof Error ? error.message : String(error)))

  const slowPath = (frame: Buffer): Packet | undefined => {
    fromParser = undefined
    try {
      parser.parse(frame)
    } catch (error) {
      // mqtt-packet throws (instead of emitting "error") on some malformed input
      fail(error instanceof Error ? error.message : String(error))
    }
    return failed ? undefined : fromParser
  }

  /** Decodes every complete frame in `buffer`; returns where the unread rest starts. */
  const frames = (buffer: Buffer): number => {
    let offset = 0
    while (!failed && buffer.length - offset >= 2) {
      let remaining = 0
      let multiplier = 1
      let at = offset + 1
      let byte: number
      do {
        if (at >= buffer.length) return offset // the length bytes are not all here yet
        byte = buffer[at++]
        remaining += (byte & 0x7f) * multiplier
        multiplier *= 128
        if (multiplier > 128 ** 4) {
          fail("Invalid length")
          return offset
        }
      } while (byte & 0x80)
      if (remaining > MAX_REMAINING_LENGTH) {
        fail("Invalid length")
        return offset
      }
      const end = at + remaining
      if (end > buffer.length) {
        needed = end - offset
        return offset
      }
      const frame = buffer.subarray(offset, end)
      const packet = decodeFast(frame, at - offset, protocolVersion) ?? slowPath(frame)
      offset = end
      // A throw here is our own bug, not a malformed packet: it propagates.
      if (packet !== undefined) onPacket(packet)
    }
    return offset
  }

  return {
    push: (chunk) => {
      if (failed) return
      const bytes = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
      pending.push(bytes)
      pendingLength += bytes.length
      // A large packet arrives in many chunks: join them once, when all of it is here.
      if (needed > 0 && pendingLength < needed) return
      const buffer = pending.length === 1 ? pending[0] : Buffer.concat(pending, pendingLength)
      needed = 0
      const offset = frames(buffer)
      if (offset === buffer.length) {
        pending = []
        pendingLength = 0
      } else {
        pending = [buffer.subarray(offset)]
        pendingLength = buffer.length - offset
      }
    }
  }
}
