import { describe, expect, it } from "@effect/vitest"
import { Deferred } from "effect"
import { encode, makeDecoder, type Packet, type PublishPacket } from "../src/internal/codec.ts"
import {
  type ControlRequest,
  type Output,
  Protocol,
  readConnack,
  setDup,
  setPacketId,
  type SubscribeRequest,
  type SubscribeResult,
  type UnsubscribeRequest
} from "../src/internal/protocol.ts"
import type { MqttError } from "../src/MqttError.ts"
import { PublishRequest } from "../src/internal/publishRequest.ts"
import type { ProtocolVersion } from "../src/MqttOptions.ts"

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

const decode = (bytes: Uint8Array, version: ProtocolVersion = 4): Packet => {
  const packets: Array<Packet> = []
  const errors: Array<string> = []
  makeDecoder(version, (p) => packets.push(p), (e) => errors.push(e)).push(bytes)
  expect(errors).toEqual([])
  expect(packets).toHaveLength(1)
  return packets[0]
}

const decodePublish = (bytes: Uint8Array, version: ProtocolVersion = 4): PublishPacket => {
  const packet = decode(bytes, version)
  if (packet.cmd !== "publish") throw new Error(`expected a PUBLISH, got ${packet.cmd}`)
  return packet
}

const encodePublish = (
  topic: string,
  qos: 0 | 1 | 2,
  options: { readonly version?: ProtocolVersion; readonly payload?: Buffer; readonly retain?: boolean } = {}
): Uint8Array => {
  const version = options.version ?? 4
  const packet: PublishPacket = {
    cmd: "publish",
    topic,
    payload: options.payload ?? Buffer.from("payload"),
    qos,
    dup: false,
    retain: options.retain ?? false
  }
  if (qos > 0) packet.messageId = 1 // placeholder, patched by the protocol
  if (version === 5) packet.properties = { userProperties: { k: "v" }, contentType: "text/plain" }
  return encode(packet, version)
}

const publishRequest = (
  topic: string,
  qos: 0 | 1 | 2,
  version: ProtocolVersion = 4,
  bytes: Uint8Array = encodePublish(topic, qos, { version })
): PublishRequest =>
  new PublishRequest(topic, qos, bytes, { cmd: "publish", topic, payload: Buffer.from("payload"), qos, dup: false, retain: false }, 0)

const subscribeRequest = (topic = "a/#"): SubscribeRequest => ({
  _tag: "Subscribe",
  packet: { cmd: "subscribe", messageId: 0, subscriptions: [{ topic, qos: 1 }] },
  done: Deferred.makeUnsafe<SubscribeResult, MqttError>()
})

const unsubscribeRequest = (topic = "a/#"): UnsubscribeRequest => ({
  _tag: "Unsubscribe",
  packet: { cmd: "unsubscribe", messageId: 0, unsubscriptions: [topic] },
  done: Deferred.makeUnsafe<ReadonlyArray<number>, MqttError>()
})

const receive = (protocol: Protocol, packet: Packet): Array<Output> => {
  const out: Array<Output> = []
  protocol.receive(packet, out)
  return out
}

const resume = (protocol: Protocol, sessionPresent: boolean, receiveMaximum?: number): Array<Packet | Uint8Array> => {
  const out: Array<Packet | Uint8Array> = []
  protocol.resume(sessionPresent, receiveMaximum, out)
  return out
}

/** Sends a publish through the protocol and returns it. */
const send = (protocol: Protocol, topic: string, qos: 0 | 1 | 2): PublishRequest => {
  const request = publishRequest(topic, qos, protocol.version)
  protocol.sendPublish(request)
  return request
}

/** A QoS 1 request with a copy of a pre-encoded PUBLISH (cheap: for the loops over the whole id space). */
const template = encodePublish("t", 1)
const templatePacket: PublishPacket = { cmd: "publish", topic: "t", payload: Buffer.from("payload"), qos: 1, dup: false, retain: false }
const quickSend = (protocol: Protocol): PublishRequest => {
  const request = new PublishRequest("t", 1, template.slice(), templatePacket, 0)
  protocol.sendPublish(request)
  return request
}

/** Resume output in a readable form: PUBLISH bytes are decoded. */
const describeResent = (items: Array<Packet | Uint8Array>, version: ProtocolVersion = 4) =>
  items.map((item) => {
    if (item instanceof Uint8Array) {
      const p = decodePublish(item, version)
      return { cmd: "publish", topic: p.topic, messageId: p.messageId, qos: p.qos, dup: p.dup }
    }
    return { cmd: item.cmd, messageId: item.messageId }
  })

const incoming = (qos: 0 | 1 | 2, messageId?: number, topic = "in/t"): PublishPacket => {
  const packet: PublishPacket = { cmd: "publish", topic, payload: Buffer.from("m"), qos, dup: false, retain: false }
  if (messageId !== undefined) packet.messageId = messageId
  return packet
}

// ---------------------------------------------------------------------------
// Packet ids
// ---------------------------------------------------------------------------

describe("packet ids", () => {
  it("allocates 1, 2, 3, … and patches them into the PUBLISH bytes", () => {
    const protocol = new Protocol(4, 10)
    const requests = [send(protocol, "a", 1), send(protocol, "b", 2), send(protocol, "c", 1)]
    expect(requests.map((r) => r.messageId)).toEqual([1, 2, 3])
    expect(requests.map((r) => decodePublish(r.bytes).messageId)).toEqual([1, 2, 3])
    expect(protocol.inflightCount).toBe(3)
  })

  it("sendPublish returns the request's own bytes, patched in place", () => {
    const protocol = new Protocol(4, 10)
    send(protocol, "first", 1)
    const request = publishRequest("a/b", 1)
    const bytes = protocol.sendPublish(request)
    expect(bytes).toBe(request.bytes)
    expect(decodePublish(bytes)).toMatchObject({ topic: "a/b", qos: 1, messageId: 2 })
  })

  it("QoS 0 publishes take no id and no window slot", () => {
    const protocol = new Protocol(4, 1)
    const request = publishRequest("a", 0)
    const before = Uint8Array.from(request.bytes)
    const bytes = protocol.sendPublish(request)
    expect(request.messageId).toBe(0)
    expect(bytes).toBe(request.bytes)
    expect(Array.from(bytes)).toEqual(Array.from(before))
    expect(protocol.inflightCount).toBe(0)
    expect(protocol.hasWindow).toBe(true)
    expect(send(protocol, "b", 1).messageId).toBe(1)
  })

  it("SUBSCRIBE/UNSUBSCRIBE share the id sequence with publishes", () => {
    const protocol = new Protocol(4, 10)
    const p1 = send(protocol, "a", 1)
    const sub = subscribeRequest()
    const packet = protocol.sendControl(sub)
    const p2 = send(protocol, "b", 2)
    const unsub = unsubscribeRequest()
    protocol.sendControl(unsub)
    expect([p1.messageId, sub.packet.messageId, p2.messageId, unsub.packet.messageId]).toEqual([1, 2, 3, 4])
    expect(packet).toBe(sub.packet)
  })

  it("wraps from 65535 back to 1", () => {
    const protocol = new Protocol(4, 10)
    const ids: Array<number> = []
    for (let i = 0; i < 65_536; i++) {
      const request = subscribeRequest()
      protocol.sendControl(request)
      ids.push(request.packet.messageId!)
      receive(protocol, { cmd: "suback", messageId: request.packet.messageId!, granted: [1] })
    }
    expect(ids[0]).toBe(1)
    expect(ids[65_534]).toBe(65_535)
    expect(ids[65_535]).toBe(1)
    expect(ids.every((id) => id >= 1 && id <= 65_535)).toBe(true)
  })

  it("after wrapping, skips ids still in use", () => {
    const protocol = new Protocol(4, 10)
    const kept1 = send(protocol, "kept", 1) // id 1 stays inflight
    const kept2 = subscribeRequest()
    protocol.sendControl(kept2) // id 2 stays pending
    // cycle through 3..65535
    const ids: Array<number> = []
    for (let i = 3; i <= 65_535; i++) {
      const request = quickSend(protocol)
      ids.push(request.messageId)
      receive(protocol, { cmd: "puback", messageId: request.messageId })
    }
    expect(ids).toEqual(Array.from({ length: 65_533 }, (_, i) => i + 3))
    expect([kept1.messageId, kept2.packet.messageId]).toEqual([1, 2])
    expect(send(protocol, "next", 1).messageId).toBe(3)
  })

  it("when every id is in use, hasFreeId is false; freed ids are reused and used ones never", () => {
    const protocol = new Protocol(4, 100)
    const ids: Array<number> = []
    for (let i = 1; i <= 65_535; i++) {
      const request: ControlRequest = i % 2 === 0 ? subscribeRequest() : unsubscribeRequest()
      protocol.sendControl(request)
      ids.push(request.packet.messageId!)
    }
    expect(ids).toEqual(Array.from({ length: 65_535 }, (_, i) => i + 1))
    expect(protocol.hasFreeId).toBe(false)

    // free 5 (an UNSUBSCRIBE), 100 (a SUBSCRIBE) and 65535 (an UNSUBSCRIBE)
    expect(receive(protocol, { cmd: "unsuback", messageId: 5 } as Packet)).toMatchObject([{ _tag: "Unsubscribed" }])
    expect(receive(protocol, { cmd: "suback", messageId: 100, granted: [0] })).toMatchObject([{ _tag: "Subscribed" }])
    expect(receive(protocol, { cmd: "unsuback", messageId: 65_535 } as Packet)).toMatchObject([{ _tag: "Unsubscribed" }])
    expect(protocol.hasFreeId).toBe(true)

    const allocated = [send(protocol, "x", 1).messageId, send(protocol, "y", 2).messageId]
    const sub = subscribeRequest()
    protocol.sendControl(sub)
    allocated.push(sub.packet.messageId!)
    expect(allocated).toEqual([5, 100, 65_535])
    expect(protocol.hasFreeId).toBe(false)
  })

  it("never allocates an id held by an inflight publish or a pending control request", () => {
    const protocol = new Protocol(4, 1000)
    const inUse = new Set<number>()
    // wrap around twice, keeping some publishes and subscribes pending; ack the rest at once
    const reused: Array<number> = []
    for (let n = 0; n < 2 * 65_535; n++) {
      if (n % 3 === 0) {
        const request = subscribeRequest()
        protocol.sendControl(request)
        const id = request.packet.messageId!
        if (inUse.has(id)) reused.push(id)
        if (n % 11 === 0 && inUse.size < 900) inUse.add(id)
        else receive(protocol, { cmd: "suback", messageId: id, granted: [0] })
      } else {
        const id = quickSend(protocol).messageId
        if (inUse.has(id)) reused.push(id)
        if (n % 7 === 0 && inUse.size < 900) inUse.add(id)
        else receive(protocol, { cmd: "puback", messageId: id })
      }
    }
    expect(reused).toEqual([])
    expect(inUse.size).toBe(900)
    expect(protocol.inflightCount + protocol.drain().control.length).toBe(900)
  })
})

// ---------------------------------------------------------------------------
// Window
// ---------------------------------------------------------------------------

describe("inflight window", () => {
  it("hasWindow respects maxInflight", () => {
    const protocol = new Protocol(4, 2)
    expect(protocol.hasWindow).toBe(true)
    const a = send(protocol, "a", 1)
    expect(protocol.hasWindow).toBe(true)
    send(protocol, "b", 2)
    expect(protocol.hasWindow).toBe(false)
    expect(protocol.inflightCount).toBe(2)
    receive(protocol, { cmd: "puback", messageId: a.messageId })
    expect(protocol.hasWindow).toBe(true)
    expect(protocol.inflightCount).toBe(1)
  })

  it("pending SUBSCRIBEs do not use the publish window", () => {
    const protocol = new Protocol(4, 1)
    protocol.sendControl(subscribeRequest())
    protocol.sendControl(subscribeRequest())
    expect(protocol.hasWindow).toBe(true)
  })

  it("resume narrows the window to the broker's receiveMaximum", () => {
    const protocol = new Protocol(5, 3)
    resume(protocol, false, 1)
    expect(protocol.hasWindow).toBe(true)
    send(protocol, "a", 1)
    expect(protocol.hasWindow).toBe(false)
  })

  it("a receiveMaximum above maxInflight keeps maxInflight", () => {
    const protocol = new Protocol(5, 2)
    resume(protocol, false, 100)
    send(protocol, "a", 1)
    expect(protocol.hasWindow).toBe(true)
    send(protocol, "b", 1)
    expect(protocol.hasWindow).toBe(false)
  })

  it("the window is recomputed on every resume", () => {
    const protocol = new Protocol(5, 3)
    send(protocol, "a", 1)
    send(protocol, "b", 1)
    resume(protocol, true, 2)
    expect(protocol.hasWindow).toBe(false)
    resume(protocol, true, undefined) // no receiveMaximum: back to maxInflight
    expect(protocol.hasWindow).toBe(true)
    resume(protocol, true, 1)
    expect(protocol.hasWindow).toBe(false)
  })
})

// ---------------------------------------------------------------------------
// Outgoing QoS 1 / QoS 2
// ---------------------------------------------------------------------------

describe("outgoing QoS 1", () => {
  it("PUBACK acknowledges the request", () => {
    const protocol = new Protocol(4, 10)
    const request = send(protocol, "a", 1)
    const out = receive(protocol, { cmd: "puback", messageId: request.messageId })
    expect(out).toHaveLength(1)
    expect(out[0]._tag).toBe("Acknowledged")
    expect(out[0]._tag === "Acknowledged" && out[0].request).toBe(request)
    expect(protocol.inflightCount).toBe(0)
  })

  it("acknowledges out of order", () => {
    const protocol = new Protocol(4, 10)
    const [a, b, c] = [send(protocol, "a", 1), send(protocol, "b", 1), send(protocol, "c", 1)]
    const acked = [b, c, a].flatMap((r) => receive(protocol, { cmd: "puback", messageId: r.messageId }))
    expect(acked.map((o) => o._tag === "Acknowledged" ? o.request.topic : o._tag)).toEqual(["b", "c", "a"])
  })

  it("v5 PUBACK with a failure reason code rejects the request", () => {
    const protocol = new Protocol(5, 10)
    const request = send(protocol, "a", 1)
    const out = receive(protocol, {
      cmd: "puback",
      messageId: request.messageId,
      reasonCode: 0x87,
      properties: { reasonString: "not authorized" }
    })
    expect(out).toEqual([{ _tag: "Rejected", request, code: 0x87, reason: "not authorized" }])
    expect(protocol.inflightCount).toBe(0)
  })

  it("v5 PUBACK with a success reason code below 0x80 acknowledges", () => {
    const protocol = new Protocol(5, 10)
    const request = send(protocol, "a", 1)
    expect(receive(protocol, { cmd: "puback", messageId: request.messageId, reasonCode: 0x10 })).toEqual([
      { _tag: "Acknowledged", request }
    ])
  })

  it("duplicate and unknown PUBACKs are ignored", () => {
    const protocol = new Protocol(4, 10)
    const request = send(protocol, "a", 1)
    expect(receive(protocol, { cmd: "puback", messageId: request.messageId })).toHaveLength(1)
    expect(receive(protocol, { cmd: "puback", messageId: request.messageId })).toEqual([])
    expect(receive(protocol, { cmd: "puback", messageId: 999 })).toEqual([])
  })

  it("PUBCOMP for a QoS 1 publish is ignored", () => {
    const protocol = new Protocol(4, 10)
    const request = send(protocol, "a", 1)
    expect(receive(protocol, { cmd: "pubcomp", messageId: request.messageId })).toEqual([])
    expect(protocol.inflightCount).toBe(1)
  })
})

describe("outgoing QoS 2", () => {
  it("PUBREC -> send PUBREL, then PUBCOMP -> acknowledged", () => {
    const protocol = new Protocol(4, 10)
    const request = send(protocol, "a", 2)
    const id = request.messageId
    expect(receive(protocol, { cmd: "pubrec", messageId: id })).toEqual([{ _tag: "Send", packet: { cmd: "pubrel", messageId: id } }])
    expect(protocol.inflightCount).toBe(1) // still waiting for PUBCOMP
    expect(receive(protocol, { cmd: "pubcomp", messageId: id })).toEqual([{ _tag: "Acknowledged", request }])
    expect(protocol.inflightCount).toBe(0)
  })

  it("the PUBREL is encodable and decodes to the same id", () => {
    const protocol = new Protocol(4, 10)
    const request = send(protocol, "a", 2)
    const [output] = receive(protocol, { cmd: "pubrec", messageId: request.messageId })
    if (output._tag !== "Send") throw new Error(output._tag)
    expect(decode(encode(output.packet, 4))).toMatchObject({ cmd: "pubrel", messageId: request.messageId, qos: 1 })
  })

  it("v5 PUBREC with a failure code rejects, and sends no PUBREL", () => {
    const protocol = new Protocol(5, 10)
    const request = send(protocol, "a", 2)
    const out = receive(protocol, { cmd: "pubrec", messageId: request.messageId, reasonCode: 0x97, properties: { reasonString: "quota" } })
    expect(out).toEqual([{ _tag: "Rejected", request, code: 0x97, reason: "quota" }])
    expect(protocol.inflightCount).toBe(0)
    expect(receive(protocol, { cmd: "pubcomp", messageId: request.messageId })).toEqual([])
  })

  it("v5 PUBREC with a success code below 0x80 continues the flow", () => {
    const protocol = new Protocol(5, 10)
    const request = send(protocol, "a", 2)
    expect(receive(protocol, { cmd: "pubrec", messageId: request.messageId, reasonCode: 0x10 })).toEqual([
      { _tag: "Send", packet: { cmd: "pubrel", messageId: request.messageId } }
    ])
  })

  it("PUBACK for a QoS 2 publish and PUBCOMP before PUBREC are ignored", () => {
    const protocol = new Protocol(4, 10)
    const request = send(protocol, "a", 2)
    expect(receive(protocol, { cmd: "puback", messageId: request.messageId })).toEqual([])
    expect(receive(protocol, { cmd: "pubcomp", messageId: request.messageId })).toEqual([])
    expect(protocol.inflightCount).toBe(1)
    expect(receive(protocol, { cmd: "pubrec", messageId: request.messageId })).toHaveLength(1)
    expect(receive(protocol, { cmd: "pubcomp", messageId: request.messageId })).toEqual([{ _tag: "Acknowledged", request }])
  })

  it("a duplicate PUBREC re-sends PUBREL but acknowledges only once", () => {
    const protocol = new Protocol(4, 10)
    const request = send(protocol, "a", 2)
    const id = request.messageId
    receive(protocol, { cmd: "pubrec", messageId: id })
    expect(receive(protocol, { cmd: "pubrec", messageId: id })).toEqual([{ _tag: "Send", packet: { cmd: "pubrel", messageId: id } }])
    expect(receive(protocol, { cmd: "pubcomp", messageId: id })).toEqual([{ _tag: "Acknowledged", request }])
    expect(receive(protocol, { cmd: "pubcomp", messageId: id })).toEqual([])
  })

  it("a PUBREC for an unknown id is answered with PUBREL (v5: reason 0x92, packet identifier not found)", () => {
    expect(receive(new Protocol(4, 10), { cmd: "pubrec", messageId: 77 })).toEqual([
      { _tag: "Send", packet: { cmd: "pubrel", messageId: 77 } }
    ])
    expect(receive(new Protocol(5, 10), { cmd: "pubrec", messageId: 77 })).toEqual([
      { _tag: "Send", packet: { cmd: "pubrel", messageId: 77, reasonCode: 0x92 } }
    ])
  })

  it("unknown PUBCOMP is ignored", () => {
    expect(receive(new Protocol(4, 10), { cmd: "pubcomp", messageId: 5 })).toEqual([])
  })
})

// ---------------------------------------------------------------------------
// Incoming publishes
// ---------------------------------------------------------------------------

describe("incoming publishes", () => {
  it("QoS 0 is delivered and not acknowledged", () => {
    const packet = incoming(0)
    expect(receive(new Protocol(4, 10), packet)).toEqual([{ _tag: "Deliver", packet, ack: undefined }])
  })

  it("QoS 1 is delivered with the PUBACK to send once it is buffered", () => {
    const packet = incoming(1, 12)
    expect(receive(new Protocol(4, 10), packet)).toEqual([
      { _tag: "Deliver", packet, ack: { cmd: "puback", messageId: 12 } }
    ])
  })

  it("QoS 2 is delivered once even when the same id arrives again before PUBREL", () => {
    const protocol = new Protocol(4, 10)
    const first = incoming(2, 12)
    const again = { ...incoming(2, 12), dup: true }
    expect(receive(protocol, first)).toEqual([
      { _tag: "Deliver", packet: first, ack: { cmd: "pubrec", messageId: 12 } }
    ])
    expect(receive(protocol, again)).toEqual([{ _tag: "Send", packet: { cmd: "pubrec", messageId: 12 } }])
    expect(receive(protocol, again)).toEqual([{ _tag: "Send", packet: { cmd: "pubrec", messageId: 12 } }])
  })

  it("PUBREL is answered with PUBCOMP; afterwards the same id is a new message", () => {
    const protocol = new Protocol(4, 10)
    receive(protocol, incoming(2, 12, "first"))
    expect(receive(protocol, { cmd: "pubrel", messageId: 12 })).toEqual([{ _tag: "Send", packet: { cmd: "pubcomp", messageId: 12 } }])
    const second = incoming(2, 12, "second")
    expect(receive(protocol, second)).toEqual([
      { _tag: "Deliver", packet: second, ack: { cmd: "pubrec", messageId: 12 } }
    ])
  })

  it("QoS 2 messages with different ids are tracked independently", () => {
    const protocol = new Protocol(4, 10)
    const delivered = (p: PublishPacket) => receive(protocol, p).filter((o) => o._tag === "Deliver").length
    expect(delivered(incoming(2, 1))).toBe(1)
    expect(delivered(incoming(2, 2))).toBe(1)
    receive(protocol, { cmd: "pubrel", messageId: 1 })
    expect(delivered(incoming(2, 2))).toBe(0) // 2 still awaits PUBREL
    expect(delivered(incoming(2, 1))).toBe(1) // 1 was released
  })

  it("incoming ids are separate from outgoing ids", () => {
    const protocol = new Protocol(4, 10)
    const outgoing = send(protocol, "out", 2)
    expect(receive(protocol, incoming(2, outgoing.messageId)).map((o) => o._tag)).toEqual(["Deliver"])
    expect(receive(protocol, { cmd: "pubrel", messageId: outgoing.messageId })).toHaveLength(1)
    expect(protocol.inflightCount).toBe(1)
  })

  it("PUBREL for an unknown id is still answered with PUBCOMP (v5: reason 0x92, packet identifier not found)", () => {
    expect(receive(new Protocol(4, 10), { cmd: "pubrel", messageId: 33 })).toEqual([
      { _tag: "Send", packet: { cmd: "pubcomp", messageId: 33 } }
    ])
    expect(receive(new Protocol(5, 10), { cmd: "pubrel", messageId: 33 })).toEqual([
      { _tag: "Send", packet: { cmd: "pubcomp", messageId: 33, reasonCode: 0x92 } }
    ])
  })

  it.each([1, 2] as const)("QoS %i without a packet id is a protocol violation", (qos) => {
    const out = receive(new Protocol(4, 10), incoming(qos))
    expect(out).toHaveLength(1)
    expect(out[0]._tag).toBe("ProtocolViolation")
    expect(receive(new Protocol(4, 10), incoming(qos, 0))[0]._tag).toBe("ProtocolViolation")
  })

  it("a QoS 2 id awaiting PUBREL survives resume(sessionPresent=true) but not resume(false)", () => {
    const kept = new Protocol(4, 10)
    receive(kept, incoming(2, 9))
    resume(kept, true)
    expect(receive(kept, incoming(2, 9)).map((o) => o._tag)).toEqual(["Send"])

    const cleared = new Protocol(4, 10)
    receive(cleared, incoming(2, 9))
    resume(cleared, false)
    expect(receive(cleared, incoming(2, 9)).map((o) => o._tag)).toEqual(["Deliver"])
  })
})

// ---------------------------------------------------------------------------
// Resume after reconnect
// ---------------------------------------------------------------------------

describe("resume", () => {
  /** A: QoS 1 (1), B: QoS 2 awaiting PUBREC (2), C: QoS 2 awaiting PUBCOMP (3), D: QoS 1 (4), E: acked (5), F: QoS 0. */
  const setup = (version: ProtocolVersion = 4) => {
    const protocol = new Protocol(version, 10)
    const a = send(protocol, "A", 1)
    const b = send(protocol, "B", 2)
    const c = send(protocol, "C", 2)
    const d = send(protocol, "D", 1)
    const e = send(protocol, "E", 1)
    send(protocol, "F", 0)
    receive(protocol, { cmd: "pubrec", messageId: c.messageId })
    receive(protocol, { cmd: "puback", messageId: e.messageId })
    return { protocol, a, b, c, d, e }
  }

  it("nothing to resend on a fresh protocol", () => {
    expect(resume(new Protocol(4, 10), true)).toEqual([])
    expect(resume(new Protocol(4, 10), false)).toEqual([])
  })

  it.each([4, 5] as const)(
    "sessionPresent=true: resends unacked PUBLISHes with DUP set, PUBREL for those awaiting PUBCOMP, in original order (v%i)",
    (version) => {
      const { a, b, d, protocol } = setup(version)
      const out = resume(protocol, true)
      expect(describeResent(out, version)).toEqual([
        { cmd: "publish", topic: "A", messageId: 1, qos: 1, dup: true },
        { cmd: "publish", topic: "B", messageId: 2, qos: 2, dup: true },
        { cmd: "pubrel", messageId: 3 },
        { cmd: "publish", topic: "D", messageId: 4, qos: 1, dup: true }
      ])
      // the original bytes are resent, not a copy
      expect(out[0]).toBe(a.bytes)
      expect(out[1]).toBe(b.bytes)
      expect(out[3]).toBe(d.bytes)
    }
  )

  it("sessionPresent=true: the flows then complete normally", () => {
    const { a, b, c, d, protocol } = setup()
    resume(protocol, true)
    expect(receive(protocol, { cmd: "pubcomp", messageId: c.messageId })).toEqual([{ _tag: "Acknowledged", request: c }])
    expect(receive(protocol, { cmd: "puback", messageId: a.messageId })).toEqual([{ _tag: "Acknowledged", request: a }])
    expect(receive(protocol, { cmd: "pubrec", messageId: b.messageId })).toHaveLength(1)
    expect(receive(protocol, { cmd: "pubcomp", messageId: b.messageId })).toEqual([{ _tag: "Acknowledged", request: b }])
    expect(receive(protocol, { cmd: "puback", messageId: d.messageId })).toEqual([{ _tag: "Acknowledged", request: d }])
    expect(protocol.inflightCount).toBe(0)
  })

  it("sessionPresent=false: resends with DUP clear and restarts QoS 2 flows awaiting PUBCOMP as PUBLISH", () => {
    const { c, protocol } = setup()
    const out = resume(protocol, false)
    expect(describeResent(out)).toEqual([
      { cmd: "publish", topic: "A", messageId: 1, qos: 1, dup: false },
      { cmd: "publish", topic: "B", messageId: 2, qos: 2, dup: false },
      { cmd: "publish", topic: "C", messageId: 3, qos: 2, dup: false },
      { cmd: "publish", topic: "D", messageId: 4, qos: 1, dup: false }
    ])
    expect(out[2]).toBe(c.bytes)
    // C awaits PUBREC again: a PUBCOMP now is ignored, the full flow completes it
    expect(receive(protocol, { cmd: "pubcomp", messageId: c.messageId })).toEqual([])
    expect(receive(protocol, { cmd: "pubrec", messageId: c.messageId })).toEqual([
      { _tag: "Send", packet: { cmd: "pubrel", messageId: c.messageId } }
    ])
    expect(receive(protocol, { cmd: "pubcomp", messageId: c.messageId })).toEqual([{ _tag: "Acknowledged", request: c }])
  })

  it("DUP is cleared again by resume(false) after resume(true), and other header bits are kept", () => {
    const protocol = new Protocol(4, 10)
    const request = publishRequest("r", 1, 4, encodePublish("r", 1, { retain: true }))
    protocol.sendPublish(request)
    resume(protocol, true)
    expect(decodePublish(request.bytes)).toMatchObject({ dup: true, retain: true, qos: 1, messageId: 1 })
    resume(protocol, false)
    expect(decodePublish(request.bytes)).toMatchObject({ dup: false, retain: true, qos: 1, messageId: 1 })
  })

  it("pending SUBSCRIBE/UNSUBSCRIBE are resent after the publishes, in order, with their ids", () => {
    const protocol = new Protocol(4, 10)
    const sub1 = subscribeRequest("s/1")
    protocol.sendControl(sub1)
    send(protocol, "p", 1)
    const unsub = unsubscribeRequest("u")
    protocol.sendControl(unsub)
    const sub2 = subscribeRequest("s/2")
    protocol.sendControl(sub2)
    receive(protocol, { cmd: "suback", messageId: sub2.packet.messageId!, granted: [1] }) // acked: not resent

    for (const sessionPresent of [true, false]) {
      const out = resume(protocol, sessionPresent)
      expect(describeResent(out)).toEqual([
        { cmd: "publish", topic: "p", messageId: 2, qos: 1, dup: sessionPresent },
        { cmd: "subscribe", messageId: 1 },
        { cmd: "unsubscribe", messageId: 3 }
      ])
      expect(out[1]).toBe(sub1.packet)
      expect(out[2]).toBe(unsub.packet)
    }
  })

  it("appends to the given output array", () => {
    const protocol = new Protocol(4, 10)
    send(protocol, "p", 1)
    const out: Array<Packet | Uint8Array> = [{ cmd: "pingreq" }]
    protocol.resume(true, undefined, out)
    expect(out).toHaveLength(2)
    expect(out[0]).toEqual({ cmd: "pingreq" })
  })
})

// ---------------------------------------------------------------------------
// setPacketId / setDup
// ---------------------------------------------------------------------------

describe("setPacketId", () => {
  const topics = [
    ["a 1-byte topic", "a"],
    ["a 200-byte topic", "t".repeat(200)],
    ["a 300-byte topic (length MSB set)", "x/".repeat(150)],
    ["a multi-byte topic", "é/€/😀".repeat(40)]
  ] as const
  const payloads = [
    [0, 1],
    [100, 1],
    [127 - 12, 1],
    [200, 2],
    [16_000, 2],
    [20_000, 3],
    [2_100_000, 4]
  ] as const

  for (const version of [4, 5] as const) {
    for (const [topicName, topic] of topics) {
      it.each(payloads)(`v${version}, ${topicName}, %i-byte payload`, (size) => {
        const payload = Buffer.alloc(size, 0xa5)
        const bytes = encodePublish(topic, 1, { version, payload })
        const original = Uint8Array.from(bytes)
        for (const id of [1, 0x00ff, 0x0100, 0xabcd, 65_535]) {
          setPacketId(bytes, id)
          const decoded = decodePublish(bytes, version)
          expect(decoded.messageId).toBe(id)
          expect(decoded.topic).toBe(topic)
          expect(Buffer.compare(decoded.payload as Buffer, payload)).toBe(0)
        }
        // exactly two bytes changed compared with the placeholder id 1... (back to 1)
        setPacketId(bytes, 1)
        expect(Buffer.compare(Buffer.from(bytes), Buffer.from(original))).toBe(0)
      })
    }
  }

  it.each(payloads)("the remaining-length varint of a %i-byte payload takes %i byte(s)", (size, varintBytes) => {
    const bytes = encodePublish("t", 1, { payload: Buffer.alloc(size) })
    const remaining = bytes.length - 1 - varintBytes
    expect(remaining).toBe(2 + 1 + 2 + size)
    for (let i = 1; i < varintBytes; i++) expect(bytes[i] & 0x80).toBe(0x80)
    expect(bytes[varintBytes] & 0x80).toBe(0)
  })

  it("patches only the two id bytes", () => {
    const bytes = encodePublish("abc", 2, { payload: Buffer.from([0xff, 0xff, 0xff]) })
    const before = Array.from(bytes)
    setPacketId(bytes, 0x1234)
    const changed = Array.from(bytes).flatMap((b, i) => (b === before[i] ? [] : [[i, b]]))
    // 0x32, len, 0x00 0x03 'a' 'b' 'c', id hi, id lo
    expect(changed).toEqual([[7, 0x12], [8, 0x34]])
  })
})

describe("setDup", () => {
  it.each([
    [1, false],
    [1, true],
    [2, false],
    [2, true]
  ] as const)("sets and clears DUP on a QoS %i PUBLISH (retain=%s) without touching other bits", (qos, retain) => {
    const bytes = encodePublish("a/b", qos, { retain })
    const first = bytes[0]
    setDup(bytes, true)
    expect(bytes[0]).toBe(first | 0x08)
    expect(decodePublish(bytes)).toMatchObject({ dup: true, qos, retain })
    setDup(bytes, true) // idempotent
    expect(bytes[0]).toBe(first | 0x08)
    setDup(bytes, false)
    expect(bytes[0]).toBe(first)
    expect(decodePublish(bytes)).toMatchObject({ dup: false, qos, retain })
  })
})

// ---------------------------------------------------------------------------
// readConnack
// ---------------------------------------------------------------------------

describe("readConnack", () => {
  it("v3.1.1 return code 0 is accepted, with session-present", () => {
    expect(readConnack({ cmd: "connack", returnCode: 0, sessionPresent: true }, 4)).toEqual({
      _tag: "Accepted",
      sessionPresent: true,
      properties: {}
    })
    expect(readConnack({ cmd: "connack", returnCode: 0, sessionPresent: false }, 4)).toMatchObject({ _tag: "Accepted", sessionPresent: false })
  })

  it.each([
    [1, "unacceptable protocol version"],
    [2, "identifier rejected"],
    [3, "server unavailable"],
    [4, "bad user name or password"],
    [5, "not authorized"],
    [6, "unknown return code 6"]
  ])("v3.1.1 return code %i is refused: %s", (code, reason) => {
    expect(readConnack({ cmd: "connack", returnCode: code, sessionPresent: false }, 4)).toEqual({
      _tag: "Refused",
      code,
      reason,
      serverReference: undefined
    })
  })

  it("v5 reason code 0 is accepted, with the broker's properties", () => {
    expect(readConnack({ cmd: "connack", reasonCode: 0, sessionPresent: true, properties: { receiveMaximum: 7 } }, 5)).toEqual({
      _tag: "Accepted",
      sessionPresent: true,
      properties: { receiveMaximum: 7 }
    })
    expect(readConnack({ cmd: "connack", reasonCode: 0, sessionPresent: false }, 5)).toEqual({
      _tag: "Accepted",
      sessionPresent: false,
      properties: {}
    })
  })

  it.each([
    [0x80, "unspecified error"],
    [0x84, "unsupported protocol version"],
    [0x85, "client identifier not valid"],
    [0x86, "bad user name or password"],
    [0x87, "not authorized"],
    [0x88, "server unavailable"],
    [0x89, "server busy"],
    [0x8a, "banned"],
    [0x8c, "bad authentication method"],
    [0x95, "packet too large"],
    [0x97, "quota exceeded"],
    [0x9c, "use another server"],
    [0x9d, "server moved"],
    [0x9f, "connection rate exceeded"],
    [0xa0, "maximum connect time"],
    [0xb0, "unknown reason code 0xb0"]
  ].map(([code, reason]) => [(code as number).toString(16), code as number, reason as string] as const))(
    "v5 reason code 0x%s is refused",
    (_, code, reason) => {
      expect(readConnack({ cmd: "connack", reasonCode: code, sessionPresent: false }, 5)).toEqual({
        _tag: "Refused",
        code,
        reason,
        serverReference: undefined
      })
    }
  )

  it("v3 codes are not read with v5 names, nor the reverse", () => {
    expect(readConnack({ cmd: "connack", returnCode: 5, sessionPresent: false }, 4)).toMatchObject({ reason: "not authorized" })
    expect(readConnack({ cmd: "connack", reasonCode: 5, sessionPresent: false }, 5)).toMatchObject({ _tag: "Refused", reason: "unknown reason code 0x5" })
    expect(readConnack({ cmd: "connack", returnCode: 0x87, sessionPresent: false }, 4)).toMatchObject({ _tag: "Refused", reason: "unknown return code 135" })
  })

  it.each([4, 5] as const)("reads CONNACKs decoded from the wire (v%i)", (version) => {
    const field = version === 5 ? "reasonCode" : "returnCode"
    const accepted = decode(encode({ cmd: "connack", sessionPresent: true, [field]: 0 } as Packet, version), version)
    const refused = decode(encode({ cmd: "connack", sessionPresent: false, [field]: version === 5 ? 0x86 : 4 } as Packet, version), version)
    if (accepted.cmd !== "connack" || refused.cmd !== "connack") throw new Error("expected CONNACKs")
    expect(readConnack(accepted, version)).toMatchObject({ _tag: "Accepted", sessionPresent: true })
    expect(readConnack(refused, version)).toMatchObject({ _tag: "Refused", reason: "bad user name or password" })
  })
})

// ---------------------------------------------------------------------------
// Other packets from the broker
// ---------------------------------------------------------------------------

describe("control acknowledgements and other packets", () => {
  it("SUBACK completes the SUBSCRIBE with a copy of the granted codes", () => {
    const protocol = new Protocol(4, 10)
    const request = subscribeRequest()
    protocol.sendControl(request)
    const granted = [1, 0x80]
    const out = receive(protocol, { cmd: "suback", messageId: request.packet.messageId!, granted })
    expect(out).toEqual([{ _tag: "Subscribed", request, granted: [1, 0x80] }])
    expect(out[0]._tag === "Subscribed" && out[0].granted).not.toBe(granted)
    expect(receive(protocol, { cmd: "suback", messageId: request.packet.messageId!, granted })).toEqual([])
  })

  it("UNSUBACK completes the UNSUBSCRIBE", () => {
    const protocol = new Protocol(5, 10)
    const request = unsubscribeRequest()
    protocol.sendControl(request)
    expect(receive(protocol, { cmd: "unsuback", messageId: request.packet.messageId!, granted: [0] })).toEqual([
      { _tag: "Unsubscribed", request, codes: [0] }
    ])
    expect(receive(protocol, { cmd: "unsuback", messageId: request.packet.messageId!, granted: [0] })).toEqual([])
  })

  it("a SUBACK for an UNSUBSCRIBE id (and the reverse) is ignored", () => {
    const protocol = new Protocol(4, 10)
    const sub = subscribeRequest()
    const unsub = unsubscribeRequest()
    protocol.sendControl(sub)
    protocol.sendControl(unsub)
    expect(receive(protocol, { cmd: "suback", messageId: unsub.packet.messageId!, granted: [0] })).toEqual([])
    expect(receive(protocol, { cmd: "unsuback", messageId: sub.packet.messageId! } as Packet)).toEqual([])
    expect(protocol.drain().control).toEqual([sub, unsub])
  })

  it("unknown SUBACK/UNSUBACK are ignored", () => {
    const protocol = new Protocol(4, 10)
    expect(receive(protocol, { cmd: "suback", messageId: 1, granted: [0] })).toEqual([])
    expect(receive(protocol, { cmd: "unsuback", messageId: 1 } as Packet)).toEqual([])
  })

  it("PINGRESP -> Pong", () => {
    expect(receive(new Protocol(4, 10), { cmd: "pingresp" })).toEqual([{ _tag: "Pong" }])
  })

  it("server DISCONNECT -> ServerDisconnect with code and reason", () => {
    expect(receive(new Protocol(5, 10), { cmd: "disconnect", reasonCode: 0x8e, properties: { reasonString: "taken over" } })).toEqual([
      { _tag: "ServerDisconnect", code: 0x8e, reason: "taken over" }
    ])
    expect(receive(new Protocol(4, 10), { cmd: "disconnect" })).toEqual([
      { _tag: "ServerDisconnect", code: 0, reason: undefined }
    ])
  })

  it.each<[string, Packet]>([
    ["CONNACK", { cmd: "connack", sessionPresent: false, returnCode: 0 }],
    ["SUBSCRIBE", { cmd: "subscribe", messageId: 1, subscriptions: [{ topic: "a", qos: 0 }] }],
    ["UNSUBSCRIBE", { cmd: "unsubscribe", messageId: 1, unsubscriptions: ["a"] }],
    ["CONNECT", { cmd: "connect", clientId: "x" }],
    ["PINGREQ", { cmd: "pingreq" }]
  ])("an unexpected %s from the broker is a protocol violation", (name, packet) => {
    const protocol = new Protocol(4, 10)
    const out = receive(protocol, packet)
    expect(out).toHaveLength(1)
    expect(out[0]).toEqual({ _tag: "ProtocolViolation", reason: `unexpected ${name} packet from the broker`, code: 0x82 })
  })
})

// ---------------------------------------------------------------------------
// drain
// ---------------------------------------------------------------------------

describe("drain", () => {
  it("removes and returns every pending request, publishes in send order", () => {
    const protocol = new Protocol(4, 10)
    const a = send(protocol, "a", 1)
    const b = send(protocol, "b", 2)
    const c = send(protocol, "c", 2)
    send(protocol, "zero", 0)
    receive(protocol, { cmd: "pubrec", messageId: c.messageId }) // awaiting PUBCOMP: still pending
    const acked = send(protocol, "acked", 1)
    receive(protocol, { cmd: "puback", messageId: acked.messageId })
    const sub = subscribeRequest()
    const unsub = unsubscribeRequest()
    protocol.sendControl(sub)
    protocol.sendControl(unsub)

    const drained = protocol.drain()
    expect(drained.publishes).toEqual([a, b, c])
    expect(drained.publishes[0]).toBe(a)
    expect(drained.control).toEqual([sub, unsub])
    expect(drained.control[0]).toBe(sub)

    expect(protocol.inflightCount).toBe(0)
    expect(protocol.hasFreeId).toBe(true)
    expect(protocol.drain()).toEqual({ publishes: [], control: [] })
    expect(resume(protocol, true)).toEqual([])
    // acks for drained requests are ignored
    expect(receive(protocol, { cmd: "puback", messageId: a.messageId })).toEqual([])
    expect(receive(protocol, { cmd: "suback", messageId: sub.packet.messageId!, granted: [0] })).toEqual([])
  })

  it("frees the window", () => {
    const protocol = new Protocol(4, 1)
    send(protocol, "a", 1)
    expect(protocol.hasWindow).toBe(false)
    protocol.drain()
    expect(protocol.hasWindow).toBe(true)
  })
})
