/**
 * The MQTT session state machine: packet ids, the outgoing inflight window,
 * QoS 1/2 flows in both directions, SUBSCRIBE/UNSUBSCRIBE bookkeeping and
 * what to resend after a reconnect.
 *
 * It does no I/O and runs no effects: every transition is a synchronous,
 * deterministic method that updates the state and appends what must happen to
 * an `Output` array (packets to write, receipts to settle, messages to
 * deliver). The event loop performs the outputs. The state is mutable on
 * purpose: this is the publish hot path, and copying maps per packet would
 * cost allocations for nothing.
 */
import type * as Deferred from "effect/Deferred"
import type { MqttError } from "../MqttError.ts"
import type { ProtocolVersion } from "../MqttOptions.ts"
import * as ReasonCode from "../ReasonCode.ts"
import type { ConnackPacket, Packet, PublishPacket, SubscribePacket, UnsubscribePacket } from "./codec.ts"
import type { PublishRequest } from "./publishRequest.ts"

export type { PublishRequest } from "./publishRequest.ts"

/** Offset of the packet id in an encoded QoS 1/2 PUBLISH: after the fixed header and the topic. */
const packetIdOffset = (bytes: Uint8Array): number => {
  let i = 1
  while (bytes[i] & 0x80) i++
  i++
  return i + 2 + ((bytes[i] << 8) | bytes[i + 1])
}

/** Writes `id` into an encoded QoS 1/2 PUBLISH. */
export const setPacketId = (bytes: Uint8Array, id: number): void => {
  const at = packetIdOffset(bytes)
  bytes[at] = id >> 8
  bytes[at + 1] = id & 0xff
}

/** Sets or clears the DUP flag of an encoded PUBLISH. */
export const setDup = (bytes: Uint8Array, dup: boolean): void => {
  bytes[0] = dup ? bytes[0] | 0x08 : bytes[0] & ~0x08
}

/** What a SUBACK said: one code per filter, and the reason string (MQTT 5). */
export interface SubscribeResult {
  readonly granted: ReadonlyArray<number>
  readonly reason: string | undefined
}

export interface SubscribeRequest {
  readonly _tag: "Subscribe"
  readonly packet: SubscribePacket
  readonly done: Deferred.Deferred<SubscribeResult, MqttError>
  /** The subscription it is for (carries the MQTT 5 subscription identifier). */
  readonly subscription?: { readonly id: number | undefined; idSent: boolean } | undefined
}

export interface UnsubscribeRequest {
  readonly _tag: "Unsubscribe"
  readonly packet: UnsubscribePacket
  /** Succeeds with the UNSUBACK's codes (MQTT 5: one per filter; 3.1.1: none). */
  readonly done: Deferred.Deferred<ReadonlyArray<number>, MqttError>
}

export type ControlRequest = SubscribeRequest | UnsubscribeRequest

/** Which acknowledgement an outgoing QoS 1/2 publish waits for next. */
type Awaiting = "puback" | "pubrec" | "pubcomp"

interface Inflight {
  readonly request: PublishRequest
  awaiting: Awaiting
}

/**
 * The outputs made for every message (an acknowledgement settled, a message
 * delivered) and the acknowledgements we send are class instances, not object
 * literals: see `DecodedPublish` in codec.ts (V8 pretenures literal sites
 * whose objects outlive a young-generation GC, as a delivered message's
 * acknowledgement does while the message waits for room in a buffer).
 */
export class Acknowledged {
  readonly _tag = "Acknowledged"
  readonly request: PublishRequest
  constructor(request: PublishRequest) {
    this.request = request
  }
}

/**
 * A message for the application. `ack` (PUBACK for QoS 1, PUBREC for QoS 2)
 * must be sent once the message is in the subscribers' buffers, not before:
 * that is how a slow consumer slows the broker down.
 */
export class Deliver {
  readonly _tag = "Deliver"
  readonly packet: PublishPacket
  readonly ack: Packet | undefined
  constructor(packet: PublishPacket, ack: Packet | undefined) {
    this.packet = packet
    this.ack = ack
  }
}

/** PUBACK, PUBREC, PUBREL or PUBCOMP without a reason code (success) or properties. */
class Ack {
  readonly cmd: "puback" | "pubrec" | "pubrel" | "pubcomp"
  readonly messageId: number
  constructor(cmd: "puback" | "pubrec" | "pubrel" | "pubcomp", messageId: number) {
    this.cmd = cmd
    this.messageId = messageId
  }
}

const ack = (cmd: "puback" | "pubrec" | "pubrel" | "pubcomp", messageId: number): Packet => new Ack(cmd, messageId) as Packet

export type Output =
  | { readonly _tag: "Send"; readonly packet: Packet }
  | Acknowledged
  | { readonly _tag: "Rejected"; readonly request: PublishRequest; readonly code: number; readonly reason: string | undefined }
  | Deliver
  | {
    readonly _tag: "Subscribed"
    readonly request: SubscribeRequest
    readonly granted: ReadonlyArray<number>
    readonly reason: string | undefined
  }
  | { readonly _tag: "Unsubscribed"; readonly request: UnsubscribeRequest; readonly codes: ReadonlyArray<number> }
  | { readonly _tag: "Pong" }
  /** An AUTH packet from the broker after CONNACK (re-authentication). */
  | { readonly _tag: "Auth"; readonly code: number; readonly data: Uint8Array | undefined; readonly method: string | undefined }
  | {
    readonly _tag: "ServerDisconnect"
    readonly code: number
    readonly reason: string | undefined
    readonly serverReference: string | undefined
  }
  /** The broker broke the protocol: close the connection (MQTT 5: with DISCONNECT `code`). */
  | { readonly _tag: "ProtocolViolation"; readonly reason: string; readonly code: number }

export type ConnackResult =
  | { readonly _tag: "Accepted"; readonly sessionPresent: boolean; readonly properties: NonNullable<ConnackPacket["properties"]> }
  | { readonly _tag: "Refused"; readonly code: number; readonly reason: string; readonly serverReference: string | undefined }

const MAX_PACKET_ID = 65_535

/** Reads a CONNACK: accepted (with session-present and the server's properties) or refused (with code and reason). */
export const readConnack = (packet: ConnackPacket, version: ProtocolVersion): ConnackResult => {
  const code = (version === 5 ? packet.reasonCode : packet.returnCode) ?? packet.returnCode ?? packet.reasonCode ?? 0
  if (code === 0) {
    return { _tag: "Accepted", sessionPresent: packet.sessionPresent, properties: packet.properties ?? {} }
  }
  const reason = version === 5 ? ReasonCode.describe(code) : ReasonCode.describeV3Connack(code)
  return { _tag: "Refused", code, reason, serverReference: packet.properties?.serverReference }
}

/** The limits this client set for what the broker sends (MQTT 5 CONNECT properties). */
export interface IncomingLimits {
  /** Our Receive Maximum: QoS 1/2 messages the broker may have unacknowledged towards us. */
  readonly receiveMaximum: number | undefined
  /** Largest packet we accept. */
  readonly maximumPacketSize: number | undefined
  /** Most topic aliases the broker may use towards us (0: none). */
  readonly topicAliasMaximum: number
}

const noLimits: IncomingLimits = { receiveMaximum: undefined, maximumPacketSize: undefined, topicAliasMaximum: 0 }

/** Bytes of a packet on the wire, from its remaining length. */
const packetSize = (remainingLength: number) =>
  1 + (remainingLength < 128 ? 1 : remainingLength < 16_384 ? 2 : remainingLength < 2_097_152 ? 3 : 4) +
  remainingLength

/** Where the state machine puts its decisions (an array will do). */
export interface OutputSink {
  push(output: Output): void
}

/**
 * A reusable list of outputs. Emptying a JS array (`length = 0`) gives its
 * storage back, so the next `push` allocates again: once per packet on the
 * receive path. This one keeps its storage and only clears the references.
 */
export class Outputs implements OutputSink {
  private readonly items: Array<Output | undefined> = []
  length = 0

  push(output: Output): void {
    this.items[this.length++] = output
  }

  at(index: number): Output {
    return this.items[index]!
  }

  clear(): void {
    for (let i = 0; i < this.length; i++) this.items[i] = undefined
    this.length = 0
  }
}

export class Protocol {
  /** Outgoing QoS 1/2 publishes awaiting acknowledgement, in the order they were first sent. */
  private readonly inflight = new Map<number, Inflight>()
  /** SUBSCRIBE/UNSUBSCRIBE awaiting SUBACK/UNSUBACK. */
  private readonly control = new Map<number, ControlRequest>()
  /** Incoming QoS 2 ids delivered to the application and awaiting PUBREL (deliver-once guard). */
  private readonly incomingQos2 = new Set<number>()
  /** Incoming QoS 1 ids whose PUBACK has not been sent yet (counted against our Receive Maximum). */
  private readonly incomingQos1 = new Set<number>()
  /** Topic aliases the broker set on this connection. */
  private readonly incomingAliases = new Map<number, string>()
  private limits: IncomingLimits = noLimits
  private nextId = 1
  private window: number
  readonly version: ProtocolVersion
  readonly maxInflight: number

  constructor(version: ProtocolVersion, maxInflight: number) {
    this.version = version
    this.maxInflight = maxInflight
    this.window = maxInflight
  }

  /** QoS 1/2 publishes awaiting acknowledgement. */
  get inflightCount(): number {
    return this.inflight.size
  }

  /** Whether one more QoS 1/2 publish may be sent now. */
  get hasWindow(): boolean {
    return this.inflight.size < this.window
  }

  /** Whether a packet id can be allocated (some id in 1..65535 is free). */
  get hasFreeId(): boolean {
    return this.inflight.size + this.control.size < MAX_PACKET_ID
  }

  /**
   * The next free packet id. Ids in use (inflight publishes, pending
   * subscribes) are skipped, so an id is never reused while in use; the
   * scan is O(1) amortised because the window is far smaller than 65535.
   */
  private allocateId(): number {
    for (;;) {
      const id = this.nextId
      this.nextId = id === MAX_PACKET_ID ? 1 : id + 1
      if (!this.inflight.has(id) && !this.control.has(id)) return id
    }
  }

  /** Prepares a publish for the wire; QoS 1/2 get an id and enter the window. Call only when `hasWindow` (QoS 1/2). */
  sendPublish(request: PublishRequest): Uint8Array {
    if (request.qos > 0) {
      const id = this.allocateId()
      request.messageId = id
      setPacketId(request.bytes, id)
      this.inflight.set(id, { request, awaiting: request.qos === 1 ? "puback" : "pubrec" })
    }
    return request.bytes
  }

  /** Prepares a SUBSCRIBE/UNSUBSCRIBE for the wire with a fresh packet id. */
  sendControl(request: ControlRequest): Packet {
    const id = this.allocateId()
    request.packet.messageId = id
    this.control.set(id, request)
    return request.packet
  }

  /**
   * A new connection was accepted. Appends what must be written before any new
   * request: unacknowledged publishes (DUP when the session survived), PUBRELs,
   * and pending SUBSCRIBE/UNSUBSCRIBE, in their original order.
   */
  resume(
    sessionPresent: boolean,
    receiveMaximum: number | undefined,
    out: Array<Packet | Uint8Array>,
    limits: IncomingLimits = noLimits
  ): void {
    this.window = Math.min(this.maxInflight, receiveMaximum ?? this.maxInflight)
    this.limits = limits
    this.incomingAliases.clear()
    this.incomingQos1.clear()
    if (!sessionPresent) this.incomingQos2.clear()
    for (const entry of this.inflight.values()) {
      const request = entry.request
      if (entry.awaiting === "pubcomp") {
        if (sessionPresent) {
          out.push({ cmd: "pubrel", messageId: request.messageId })
          continue
        }
        // The broker lost the message it had acknowledged with PUBREC: start the flow again.
        entry.awaiting = "pubrec"
      }
      setDup(request.bytes, sessionPresent)
      out.push(request.bytes)
    }
    for (const request of this.control.values()) out.push(request.packet)
  }

  /** The PUBACK of incoming QoS 1 message `id` was sent: it no longer counts against our Receive Maximum. */
  acknowledged(id: number): void {
    this.incomingQos1.delete(id)
  }

  /** Handles one packet from the broker (after CONNACK). */
  receive(packet: Packet, out: OutputSink): void {
    const maximumPacketSize = this.limits.maximumPacketSize
    if (maximumPacketSize !== undefined && packet.length !== undefined && packetSize(packet.length) > maximumPacketSize) {
      out.push({ _tag: "ProtocolViolation", reason: `a ${packet.cmd.toUpperCase()} larger than our Maximum Packet Size`, code: 0x95 })
      return
    }
    switch (packet.cmd) {
      case "puback": {
        const entry = this.inflight.get(packet.messageId!)
        if (entry === undefined || entry.awaiting !== "puback") return
        this.inflight.delete(packet.messageId!)
        const code = packet.reasonCode ?? 0
        out.push(
          code >= 0x80
            ? { _tag: "Rejected", request: entry.request, code, reason: packet.properties?.reasonString }
            : new Acknowledged(entry.request)
        )
        return
      }
      case "pubrec": {
        const id = packet.messageId!
        const entry = this.inflight.get(id)
        const code = packet.reasonCode ?? 0
        if (entry !== undefined && entry.awaiting === "pubrec" && code >= 0x80) {
          this.inflight.delete(id)
          out.push({ _tag: "Rejected", request: entry.request, code, reason: packet.properties?.reasonString })
          return
        }
        if (entry !== undefined && entry.awaiting === "pubrec") entry.awaiting = "pubcomp"
        if (entry === undefined && this.version === 5) {
          out.push({ _tag: "Send", packet: { cmd: "pubrel", messageId: id, reasonCode: 0x92 } })
          return
        }
        out.push({ _tag: "Send", packet: ack("pubrel", id) })
        return
      }
      case "pubcomp": {
        const entry = this.inflight.get(packet.messageId!)
        if (entry === undefined || entry.awaiting !== "pubcomp") return
        this.inflight.delete(packet.messageId!)
        out.push(new Acknowledged(entry.request))
        return
      }
      case "publish": {
        if (this.version === 5 && !this.resolveAlias(packet, out)) return
        if (packet.qos > 0 && packet.messageId !== undefined && this.limits.receiveMaximum !== undefined) {
          const isNew = packet.qos === 1 ? !this.incomingQos1.has(packet.messageId) : !this.incomingQos2.has(packet.messageId)
          if (isNew && this.incomingQos1.size + this.incomingQos2.size >= this.limits.receiveMaximum) {
            out.push({ _tag: "ProtocolViolation", reason: "the broker exceeded our Receive Maximum", code: 0x93 })
            return
          }
        }
        if (packet.qos === 0) {
          out.push(new Deliver(packet, undefined))
        } else if (packet.messageId === undefined || packet.messageId === 0) {
          out.push({ _tag: "ProtocolViolation", reason: `QoS ${packet.qos} PUBLISH without a packet id`, code: 0x82 })
        } else if (packet.qos === 1) {
          this.incomingQos1.add(packet.messageId)
          out.push(new Deliver(packet, ack("puback", packet.messageId)))
        } else if (!this.incomingQos2.has(packet.messageId)) {
          this.incomingQos2.add(packet.messageId)
          out.push(new Deliver(packet, ack("pubrec", packet.messageId)))
        } else {
          // Delivered already (a resend before PUBREL): acknowledge again, deliver nothing.
          out.push({ _tag: "Send", packet: ack("pubrec", packet.messageId) })
        }
        return
      }
      case "pubrel": {
        const id = packet.messageId!
        const known = this.incomingQos2.delete(id)
        out.push({
          _tag: "Send",
          packet: !known && this.version === 5
            ? { cmd: "pubcomp", messageId: id, reasonCode: 0x92 } // packet identifier not found
            : ack("pubcomp", id)
        })
        return
      }
      case "suback": {
        const request = this.control.get(packet.messageId!)
        if (request === undefined || request._tag !== "Subscribe") return
        this.control.delete(packet.messageId!)
        out.push({
          _tag: "Subscribed",
          request,
          granted: (packet.granted as Array<number>).slice(),
          reason: packet.properties?.reasonString
        })
        return
      }
      case "unsuback": {
        const request = this.control.get(packet.messageId!)
        if (request === undefined || request._tag !== "Unsubscribe") return
        this.control.delete(packet.messageId!)
        out.push({ _tag: "Unsubscribed", request, codes: Array.isArray(packet.granted) ? packet.granted.slice() : [] })
        return
      }
      case "pingresp":
        out.push({ _tag: "Pong" })
        return
      case "disconnect":
        out.push({
          _tag: "ServerDisconnect",
          code: packet.reasonCode ?? 0,
          reason: packet.properties?.reasonString,
          serverReference: packet.properties?.serverReference
        })
        return
      case "auth":
        if (this.version !== 5) break
        out.push({
          _tag: "Auth",
          code: packet.reasonCode,
          data: packet.properties?.authenticationData,
          method: packet.properties?.authenticationMethod
        })
        return
    }
    out.push({ _tag: "ProtocolViolation", reason: `unexpected ${packet.cmd.toUpperCase()} packet from the broker`, code: 0x82 })
  }

  /**
   * Applies an incoming Topic Alias (MQTT 5 §3.3.2.3.4): a topic with an alias
   * sets it, an empty topic with an alias uses it. False (and a violation) when
   * the alias is out of range or unknown.
   */
  private resolveAlias(packet: PublishPacket, out: OutputSink): boolean {
    const alias = packet.properties?.topicAlias
    if (alias === undefined) {
      if (packet.topic.length > 0) return true
      out.push({ _tag: "ProtocolViolation", reason: "a PUBLISH with neither a topic nor a topic alias", code: 0x82 })
      return false
    }
    if (alias === 0 || alias > this.limits.topicAliasMaximum) {
      out.push({ _tag: "ProtocolViolation", reason: `topic alias ${alias} is out of range`, code: 0x94 })
      return false
    }
    if (packet.topic.length > 0) {
      this.incomingAliases.set(alias, packet.topic)
      return true
    }
    const topic = this.incomingAliases.get(alias)
    if (topic === undefined) {
      out.push({ _tag: "ProtocolViolation", reason: `unknown topic alias ${alias}`, code: 0x94 })
      return false
    }
    packet.topic = topic
    return true
  }

  /** Removes and returns every unacknowledged publish (the session they belonged to is gone). */
  abandonPublishes(): Array<PublishRequest> {
    const publishes = Array.from(this.inflight.values(), (entry) => entry.request)
    this.inflight.clear()
    return publishes
  }

  /** Removes and returns every pending request (the client is closing). */
  drain(): { readonly publishes: Array<PublishRequest>; readonly control: Array<ControlRequest> } {
    const publishes = Array.from(this.inflight.values(), (entry) => entry.request)
    const control = Array.from(this.control.values())
    this.inflight.clear()
    this.control.clear()
    return { publishes, control }
  }
}
