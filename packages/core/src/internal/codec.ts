/**
 * The only place that touches `mqtt-packet`: packet encoding and an
 * incremental decoder that turns a byte stream into packets.
 */
import * as MqttPacket from "mqtt-packet"
import type { ProtocolVersion } from "../MqttOptions.ts"

// mqtt-packet builds a cache of 65,536 two-byte Buffers (about 10 MiB of RSS) on its first `generate`, to
// write packet ids fast. Every packet that is frequent enough for that to matter is encoded here without
// mqtt-packet, so the cache would only cost memory: build those few bytes as needed instead.
MqttPacket.writeToStream.cacheNumbers = false

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
 * one complete frame (`buffer[start..end)`, body from `bodyStart`);
 * `undefined` sends the frame to mqtt-packet.
 */
const decodeFast = (
  buffer: Buffer,
  start: number,
  bodyStart: number,
  end: number,
  version: ProtocolVersion,
  topics: TopicCache
): Packet | undefined => {
  const first = buffer[start]
  const type = first >> 4
  const length = end - bodyStart
  if (type >= 4 && type <= 7) {
    // PUBREL must carry flags 0b0010, the others 0: anything else goes to mqtt-packet to be refused
    if (length !== 2 || (first & 0x0f) !== (type === 6 ? 2 : 0)) return undefined
    // Shaped like mqtt-packet's own result (PUBREL's flags read as QoS 1; MQTT 5: an absent reason code is 0).
    const ack = {
      cmd: ackCmd[type],
      messageId: (buffer[bodyStart] << 8) | buffer[bodyStart + 1],
      qos: type === 6 ? 1 : 0,
      dup: false,
      retain: false,
      length
    } as Packet & { reasonCode?: number }
    if (version === 5) ack.reasonCode = 0
    return ack
  }
  if (type === 13 && length === 0 && (first & 0x0f) === 0) return { cmd: "pingresp", length } as Packet
  if (type !== 3) return undefined
  const qos = (first >> 1) & 3
  if (qos === 3 || length < 2) return undefined
  let at = bodyStart
  const topicLength = (buffer[at] << 8) | buffer[at + 1]
  at += 2
  if (at + topicLength > end) return undefined
  const topic = topics.read(buffer, at, topicLength)
  at += topicLength
  let messageId: number | undefined
  if (qos > 0) {
    if (at + 2 > end) return undefined
    messageId = (buffer[at] << 8) | buffer[at + 1]
    at += 2
  }
  if (version === 5) {
    // Properties: only the common "none" case here (a zero length byte).
    if (at >= end || buffer[at] !== 0) return undefined
    at += 1
  }
  return new DecodedPublish(
    topic,
    buffer.subarray(at, end),
    qos as 0 | 1 | 2,
    (first & 0x08) !== 0,
    (first & 0x01) !== 0,
    length,
    messageId
  ) as PublishPacket
}

/**
 * A PUBLISH decoded by `decodeFast`. Hot objects are class instances, not
 * object literals, throughout the client: V8 tracks each literal's allocation
 * site, and when many of its objects live through a young-generation GC
 * (messages waiting in a subscription buffer do) it "pretenures" the site,
 * allocating every later object from it directly in the old generation. At
 * 100,000 messages/s that turned nearly every message into old-generation
 * garbage and tripled the process' memory (workload 6 of the benchmark).
 */
class DecodedPublish {
  readonly cmd = "publish"
  readonly topic: string
  readonly payload: Buffer
  readonly qos: 0 | 1 | 2
  readonly dup: boolean
  readonly retain: boolean
  readonly length: number
  readonly messageId: number | undefined
  constructor(topic: string, payload: Buffer, qos: 0 | 1 | 2, dup: boolean, retain: boolean, length: number, messageId: number | undefined) {
    this.topic = topic
    this.payload = payload
    this.qos = qos
    this.dup = dup
    this.retain = retain
    this.length = length
    this.messageId = messageId
  }
}

/**
 * The topic of the last PUBLISH decoded, with its bytes: a stream of messages
 * usually repeats topics, and comparing a few bytes is cheaper than decoding
 * (and allocating) the same string again.
 */
class TopicCache {
  private bytes = Buffer.alloc(0)
  private topic = ""

  read(buffer: Buffer, at: number, length: number): string {
    const bytes = this.bytes
    if (bytes.length === length) {
      let i = 0
      while (i < length && bytes[i] === buffer[at + i]) i++
      if (i === length) return this.topic
    }
    const topic = buffer.toString("utf8", at, at + length)
    if (length <= 256) {
      this.bytes = Buffer.from(buffer.subarray(at, at + length))
      this.topic = topic
    }
    return topic
  }
}

/** The total size of the frame starting at `offset` (header included), 0 when its header is incomplete, -1 when invalid. */
const frameSize = (buffer: Buffer, offset: number, end: number): number => {
  let remaining = 0
  let multiplier = 1
  let at = offset + 1
  let byte: number
  do {
    if (at >= end) return 0
    byte = buffer[at++]
    remaining += (byte & 0x7f) * multiplier
    multiplier *= 128
    if (multiplier > 128 ** 4) return -1
  } while (byte & 0x80)
  return remaining > MAX_REMAINING_LENGTH ? -1 : at - offset + remaining
}

/**
 * An incremental decoder. Bytes of a packet may arrive split over several
 * chunks, and one chunk may hold several packets. It frames packets itself
 * (fixed header and remaining length), decodes the common ones directly, and
 * hands every other complete frame to mqtt-packet's parser. Packets are
 * decoded in place; only a frame split across chunks is copied (once, when
 * all of it is here).
 */
export const makeDecoder = (
  protocolVersion: ProtocolVersion,
  onPacket: (packet: Packet) => void,
  onError: (reason: string) => void
): Decoder => {
  const parser = MqttPacket.parser({ protocolVersion })
  const topics = new TopicCache()
  let failed = false
  /** The start of a frame split across chunks, and its total size once its header is known (0: not yet). */
  let partial: Array<Buffer> = []
  let partialLength = 0
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

  /**
   * Decodes every complete frame in `buffer` from `offset`; returns where the
   * unread rest starts (and sets `needed` when its header is complete).
   */
  const frames = (buffer: Buffer, offset: number): number => {
    const length = buffer.length
    while (!failed && length - offset >= 2) {
      const size = frameSize(buffer, offset, length)
      if (size < 0) {
        fail("Invalid length")
        return offset
      }
      if (size === 0) return offset
      const end = offset + size
      if (end > length) {
        needed = size
        return offset
      }
      let bodyStart = offset + 2
      while (buffer[bodyStart - 1] & 0x80) bodyStart++
      const packet = decodeFast(buffer, offset, bodyStart, end, protocolVersion, topics) ??
        slowPath(buffer.subarray(offset, end))
      offset = end
      // A throw here is our own bug, not a malformed packet: it propagates.
      if (packet !== undefined) onPacket(packet)
    }
    return offset
  }

  const keep = (bytes: Buffer) => {
    partial.push(bytes)
    partialLength += bytes.length
  }

  return {
    push: (chunk) => {
      if (failed || chunk.length === 0) return
      const bytes = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
      let start = 0
      if (partialLength > 0) {
        if (needed === 0) {
          // The split frame's header is incomplete (at most 4 bytes so far): join them with the next few.
          const head = Buffer.concat([...partial, bytes.subarray(0, 5)])
          const size = frameSize(head, 0, head.length)
          if (size < 0) return fail("Invalid length")
          if (size === 0) return keep(bytes)
          needed = size
        }
        // A large packet arrives in many chunks: join them once, when all of it is here.
        if (partialLength + bytes.length < needed) return keep(bytes)
        start = needed - partialLength
        keep(bytes.subarray(0, start))
        const frame = Buffer.concat(partial, needed)
        partial = []
        partialLength = 0
        needed = 0
        frames(frame, 0)
      }
      const offset = frames(bytes, start)
      if (offset < bytes.length && !failed) keep(bytes.subarray(offset))
    }
  }
}
