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

/** Encodes one packet into the bytes to write. Throws on a packet mqtt-packet cannot encode. */
export const encode = (packet: Packet, protocolVersion: ProtocolVersion): Uint8Array =>
  MqttPacket.generate(packet, { protocolVersion })

export interface Decoder {
  /** Feeds bytes; calls `onPacket` for each complete packet, `onError` once for malformed input. */
  readonly push: (chunk: Uint8Array) => void
}

/**
 * An incremental decoder. Bytes of a packet may arrive split over several
 * chunks, and one chunk may hold several packets.
 */
export const makeDecoder = (
  protocolVersion: ProtocolVersion,
  onPacket: (packet: Packet) => void,
  onError: (reason: string) => void
): Decoder => {
  const parser = MqttPacket.parser({ protocolVersion })
  let failed = false
  // A throw in our own callback is a bug, not a malformed packet: it is rethrown after parsing.
  let callbackError: { readonly error: unknown } | undefined
  parser.on("packet", (packet: Packet) => {
    if (failed || callbackError !== undefined) return
    try {
      onPacket(packet)
    } catch (error) {
      callbackError = { error }
    }
  })
  parser.on("error", (error: unknown) => {
    if (failed) return
    failed = true
    onError(error instanceof Error ? error.message : String(error))
  })
  return {
    push: (chunk) => {
      if (failed) return
      try {
        parser.parse(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength))
      } catch (error) {
        // mqtt-packet throws (instead of emitting "error") on some malformed input
        if (!failed) {
          failed = true
          onError(error instanceof Error ? error.message : String(error))
        }
      }
      if (callbackError !== undefined) {
        const { error } = callbackError
        callbackError = undefined
        throw error
      }
    }
  }
}
