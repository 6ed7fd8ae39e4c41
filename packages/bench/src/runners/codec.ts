/**
 * The codec micro-benchmark: effect-mqtt's encode path (`preparePublish`:
 * validate, encode with mqtt-packet, make the receipt) and decode path
 * (`makeDecoder`) against bare mqtt-packet (`generate`, `parser`) on the same
 * packets, in one process, alternating ours / bare round by round.
 *
 * The internals are imported through the package's `./*` export
 * (`dist/internal/*.js`); nothing is added to core's public API for this.
 */
import { makeDecoder } from "@effect-mqtt/core/internal/codec"
import { preparePublish } from "@effect-mqtt/core/internal/packets"
import * as MqttPacket from "mqtt-packet"
import { median, usage } from "../measure.ts"
import type { CodecResult, CodecSample, CodecSpec } from "../protocol.ts"

const TOPIC = "bench/codec/sensor-17"
const PAYLOAD = Buffer.alloc(64, 0x78)
/** Bytes per simulated socket read when decoding. */
const READ_SIZE = 64 * 1024

/** Nanoseconds per packet of `run(packets)`. */
const time = (packets: number, run: (packets: number) => void): number => {
  const start = process.hrtime.bigint()
  run(packets)
  return Number(process.hrtime.bigint() - start) / packets
}

/** Keeps results reachable so the JIT cannot drop the work. */
let sink = 0

const encodeOurs = (qos: 0 | 1) => (packets: number) => {
  const message = { topic: TOPIC, payload: PAYLOAD, qos }
  for (let i = 0; i < packets; i++) {
    const request = preparePublish(message, 4, undefined, 0)
    if (!("bytes" in request)) throw new Error(request.message)
    sink += request.bytes.length
  }
}

const encodeBare = (qos: 0 | 1) => (packets: number) => {
  const packet: MqttPacket.IPublishPacket = {
    cmd: "publish",
    topic: TOPIC,
    payload: PAYLOAD,
    qos,
    retain: false,
    dup: false,
    ...(qos > 0 ? { messageId: 1 } : {})
  }
  for (let i = 0; i < packets; i++) sink += MqttPacket.generate(packet, { protocolVersion: 4 }).length
}

/** `packets` QoS 1 PUBLISH packets back to back, cut into socket-sized reads (packets straddle reads). */
const wireChunks = (packets: number): Array<Buffer> => {
  const one = MqttPacket.generate(
    { cmd: "publish", topic: TOPIC, payload: PAYLOAD, qos: 1, retain: false, dup: false, messageId: 7 },
    { protocolVersion: 4 }
  )
  const all = Buffer.concat(Array.from({ length: packets }, () => one))
  const chunks: Array<Buffer> = []
  for (let at = 0; at < all.length; at += READ_SIZE) chunks.push(all.subarray(at, at + READ_SIZE))
  return chunks
}

const decodeOurs = (chunks: ReadonlyArray<Buffer>) => (packets: number) => {
  let count = 0
  const decoder = makeDecoder(4, () => void count++, (reason) => {
    throw new Error(reason)
  })
  for (const chunk of chunks) decoder.push(chunk)
  if (count !== packets) throw new Error(`decoded ${count} of ${packets}`)
  sink += count
}

const decodeBare = (chunks: ReadonlyArray<Buffer>) => (packets: number) => {
  let count = 0
  const parser = MqttPacket.parser({ protocolVersion: 4 })
  parser.on("packet", () => void count++)
  parser.on("error", (error) => {
    throw error
  })
  for (const chunk of chunks) parser.parse(chunk)
  if (count !== packets) throw new Error(`decoded ${count} of ${packets}`)
  sink += count
}

/** One warm-up of each, then `rounds` timed samples of each, ours and bare taking turns to go first. */
const compare = (spec: CodecSpec, ours: (n: number) => void, bare: (n: number) => void): CodecSample => {
  ours(spec.packets)
  bare(spec.packets)
  const oursNs: Array<number> = []
  const bareNs: Array<number> = []
  for (let round = 0; round < spec.rounds; round++) {
    if (round % 2 === 0) {
      oursNs.push(time(spec.packets, ours))
      bareNs.push(time(spec.packets, bare))
    } else {
      bareNs.push(time(spec.packets, bare))
      oursNs.push(time(spec.packets, ours))
    }
  }
  return { oursNs: median(oursNs), bareNs: median(bareNs) }
}

export const codec = (spec: CodecSpec): CodecResult => {
  const chunks = wireChunks(spec.packets)
  const result: CodecResult = {
    role: "codec",
    encodeQos0: compare(spec, encodeOurs(0), encodeBare(0)),
    encodeQos1: compare(spec, encodeOurs(1), encodeBare(1)),
    decode: compare(spec, decodeOurs(chunks), decodeBare(chunks)),
    ...usage()
  }
  if (sink < 0) console.log(sink)
  return result
}
