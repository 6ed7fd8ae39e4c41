import { describe, expect, it } from "@effect/vitest"
import { encode, makeDecoder, type Packet } from "../src/internal/codec.ts"
import type { ProtocolVersion } from "../src/MqttOptions.ts"

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

interface Collected {
  readonly packets: Array<Packet>
  readonly errors: Array<string>
  readonly push: (chunk: Uint8Array) => void
}

const collector = (version: ProtocolVersion): Collected => {
  const packets: Array<Packet> = []
  const errors: Array<string> = []
  const decoder = makeDecoder(version, (p) => packets.push(p), (e) => errors.push(e))
  return { packets, errors, push: decoder.push }
}

const decodeOne = (bytes: Uint8Array, version: ProtocolVersion): Packet => {
  const c = collector(version)
  c.push(bytes)
  expect(c.errors).toEqual([])
  expect(c.packets).toHaveLength(1)
  return c.packets[0]
}

const concat = (chunks: ReadonlyArray<Uint8Array>): Uint8Array => {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0))
  let at = 0
  for (const c of chunks) {
    out.set(c, at)
    at += c.length
  }
  return out
}

// Packets as the decoder returns them; round trips compare with `toMatchObject`
// (the decoder adds `length`, and defaults such as `retain: false`).

const v4Packets: ReadonlyArray<Packet> = [
  {
    cmd: "connect",
    protocolId: "MQTT",
    protocolVersion: 4,
    clean: true,
    clientId: "client-1",
    keepalive: 30,
    username: "user",
    password: Buffer.from("secret"),
    will: { topic: "status/client-1", payload: Buffer.from("offline"), qos: 1, retain: true }
  },
  { cmd: "connack", sessionPresent: true, returnCode: 0 },
  { cmd: "connack", sessionPresent: false, returnCode: 5 },
  { cmd: "publish", topic: "a/b", payload: Buffer.from("hello"), qos: 0, dup: false, retain: false },
  { cmd: "publish", topic: "a/b", payload: Buffer.from("hello"), qos: 1, messageId: 7, dup: true, retain: true },
  { cmd: "publish", topic: "é/€", payload: Buffer.alloc(0), qos: 2, messageId: 65_535, dup: false, retain: false },
  { cmd: "puback", messageId: 7 },
  { cmd: "pubrec", messageId: 8 },
  { cmd: "pubrel", messageId: 9 },
  { cmd: "pubcomp", messageId: 10 },
  { cmd: "subscribe", messageId: 3, subscriptions: [{ topic: "a/#", qos: 1 }, { topic: "+/b", qos: 2 }] },
  { cmd: "suback", messageId: 3, granted: [1, 0x80] },
  { cmd: "unsubscribe", messageId: 4, unsubscriptions: ["a/#", "+/b"] },
  { cmd: "unsuback", messageId: 4 } as Packet,
  { cmd: "pingreq" },
  { cmd: "pingresp" },
  { cmd: "disconnect" }
]

const userProperties = { app: "test", multi: ["1", "2"] }

const v5Packets: ReadonlyArray<Packet> = [
  {
    cmd: "connect",
    protocolId: "MQTT",
    protocolVersion: 5,
    clean: false,
    clientId: "client-5",
    keepalive: 60,
    properties: { sessionExpiryInterval: 3600, receiveMaximum: 20, maximumPacketSize: 1024, userProperties },
    will: {
      topic: "status/client-5",
      payload: Buffer.from("gone"),
      qos: 2,
      retain: false,
      properties: { willDelayInterval: 5, contentType: "text/plain", userProperties }
    }
  },
  {
    cmd: "connack",
    sessionPresent: true,
    reasonCode: 0,
    properties: { receiveMaximum: 5, topicAliasMaximum: 10, assignedClientIdentifier: "auto-1", userProperties }
  },
  { cmd: "connack", sessionPresent: false, reasonCode: 0x87, properties: { reasonString: "not authorized" } },
  {
    cmd: "publish",
    topic: "a/b",
    payload: Buffer.from([0, 1, 2, 255]),
    qos: 2,
    messageId: 42,
    dup: false,
    retain: true,
    properties: {
      payloadFormatIndicator: false,
      messageExpiryInterval: 60,
      responseTopic: "reply/to",
      correlationData: Buffer.from("corr"),
      contentType: "application/octet-stream",
      userProperties
    }
  },
  { cmd: "publish", topic: "a", payload: Buffer.from("x"), qos: 0, dup: false, retain: false },
  { cmd: "puback", messageId: 42, reasonCode: 0x87, properties: { reasonString: "no", userProperties } },
  { cmd: "pubrec", messageId: 43, reasonCode: 0x10 },
  { cmd: "pubrel", messageId: 44, reasonCode: 0x92, properties: { reasonString: "unknown id" } },
  { cmd: "pubcomp", messageId: 45, reasonCode: 0 },
  {
    cmd: "subscribe",
    messageId: 3,
    subscriptions: [{ topic: "a/#", qos: 1, nl: true, rap: true, rh: 1 }, { topic: "$share/g/b", qos: 0, nl: false, rap: false, rh: 2 }],
    properties: { subscriptionIdentifier: 12, userProperties }
  },
  { cmd: "suback", messageId: 3, granted: [1, 0x87], properties: { reasonString: "partly", userProperties } },
  { cmd: "unsubscribe", messageId: 4, unsubscriptions: ["a/#"], properties: { userProperties } },
  { cmd: "unsuback", messageId: 4, granted: [0, 0x11] },
  { cmd: "pingreq" },
  { cmd: "pingresp" },
  { cmd: "disconnect", reasonCode: 0x8e, properties: { reasonString: "session taken over", userProperties } },
  { cmd: "auth", reasonCode: 0x18, properties: { authenticationMethod: "SCRAM", authenticationData: Buffer.from("abc") } }
]

// ---------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------

describe("encode / makeDecoder round trips", () => {
  describe("protocolVersion 4", () => {
    it.each(v4Packets.map((p, i) => [`${i}: ${p.cmd}`, p] as const))("%s", (_, packet) => {
      const bytes = encode(packet, 4)
      expect(bytes).toBeInstanceOf(Uint8Array)
      expect(decodeOne(bytes, 4)).toMatchObject(packet)
    })
  })

  describe("protocolVersion 5", () => {
    it.each(v5Packets.map((p, i) => [`${i}: ${p.cmd}`, p] as const))("%s", (_, packet) => {
      const bytes = encode(packet, 5)
      expect(decodeOne(bytes, 5)).toMatchObject(packet)
    })
  })

  it("covers every packet type in both versions", () => {
    const all = [
      "connect",
      "connack",
      "publish",
      "puback",
      "pubrec",
      "pubrel",
      "pubcomp",
      "subscribe",
      "suback",
      "unsubscribe",
      "unsuback",
      "pingreq",
      "pingresp",
      "disconnect"
    ]
    expect(new Set(v4Packets.map((p) => p.cmd))).toEqual(new Set(all))
    expect(new Set(v5Packets.map((p) => p.cmd))).toEqual(new Set([...all, "auth"]))
  })

  it("keeps v5 user properties with repeated keys", () => {
    const packet: Packet = {
      cmd: "publish",
      topic: "t",
      payload: Buffer.from("p"),
      qos: 1,
      messageId: 1,
      dup: false,
      retain: false,
      properties: { userProperties: { k: ["a", "b", "c"], other: "x" } }
    }
    const decoded = decodeOne(encode(packet, 5), 5)
    expect(decoded.cmd === "publish" && decoded.properties?.userProperties).toEqual({ k: ["a", "b", "c"], other: "x" })
  })

  it("v4 does not put properties on the wire", () => {
    const withProps: Packet = { cmd: "puback", messageId: 1, reasonCode: 0x87, properties: { reasonString: "no" } }
    const bytes = encode(withProps, 4)
    expect(Array.from(bytes)).toEqual([0x40, 0x02, 0x00, 0x01])
  })

  it.each([
    [0, 1],
    [200, 2],
    [20_000, 3],
    [3_000_000, 4]
  ])("round trips a %i-byte payload (%i-byte remaining length)", (size, varintBytes) => {
    const payload = Buffer.alloc(size, 0x5a)
    const packet: Packet = { cmd: "publish", topic: "big", payload, qos: 1, messageId: 9, dup: false, retain: false }
    const bytes = encode(packet, 4)
    // fixed header: 1 byte + remaining-length varint
    expect(bytes.length).toBe(1 + varintBytes + 2 + 3 + 2 + size)
    const decoded = decodeOne(bytes, 4)
    expect(decoded).toMatchObject({ cmd: "publish", topic: "big", messageId: 9 })
    expect(decoded.cmd === "publish" && Buffer.compare(decoded.payload as Buffer, payload)).toBe(0)
  })

  it("throws on a packet it cannot encode", () => {
    expect(() => encode({ cmd: "publish", topic: "a", payload: "", qos: 1, dup: false, retain: false }, 4)).toThrow()
    expect(() => encode({ cmd: "auth", reasonCode: 0 }, 4)).toThrow()
  })
})

// ---------------------------------------------------------------------------
// Streaming
// ---------------------------------------------------------------------------

describe("makeDecoder streaming", () => {
  it.each([4, 5] as const)("decodes a stream fed byte by byte (v%i)", (version) => {
    const packets = version === 4 ? v4Packets : v5Packets
    const stream = concat(packets.map((p) => encode(p, version)))
    const c = collector(version)
    for (let i = 0; i < stream.length; i++) {
      c.push(stream.subarray(i, i + 1))
      // nothing is emitted before the last byte of the first packet
      if (i === 0) expect(c.packets).toEqual([])
    }
    expect(c.errors).toEqual([])
    expect(c.packets.map((p) => p.cmd)).toEqual(packets.map((p) => p.cmd))
    packets.forEach((p, i) => expect(c.packets[i]).toMatchObject(p))
  })

  it("emits a packet only when its last byte arrives", () => {
    const bytes = encode({ cmd: "publish", topic: "a/b", payload: Buffer.alloc(300, 1), qos: 0, dup: false, retain: false }, 4)
    const c = collector(4)
    c.push(bytes.subarray(0, 2)) // splits the 2-byte remaining-length varint
    c.push(bytes.subarray(2, bytes.length - 1))
    expect(c.packets).toHaveLength(0)
    c.push(bytes.subarray(bytes.length - 1))
    expect(c.packets).toHaveLength(1)
    expect(c.errors).toEqual([])
  })

  it.each([4, 5] as const)("decodes several packets from one chunk, in order (v%i)", (version) => {
    const packets = version === 4 ? v4Packets : v5Packets
    const c = collector(version)
    c.push(concat(packets.map((p) => encode(p, version))))
    expect(c.errors).toEqual([])
    expect(c.packets).toHaveLength(packets.length)
    packets.forEach((p, i) => expect(c.packets[i]).toMatchObject(p))
  })

  it("handles chunks that end in the middle of one packet and start another", () => {
    const a = encode({ cmd: "puback", messageId: 1 }, 4)
    const b = encode({ cmd: "publish", topic: "x", payload: Buffer.from("yz"), qos: 1, messageId: 2, dup: false, retain: false }, 4)
    const d = encode({ cmd: "pingresp" }, 4)
    const stream = concat([a, b, d])
    const c = collector(4)
    c.push(stream.subarray(0, 3))
    c.push(stream.subarray(3, 9))
    c.push(stream.subarray(9))
    expect(c.errors).toEqual([])
    expect(c.packets.map((p) => [p.cmd, p.messageId])).toEqual([["puback", 1], ["publish", 2], ["pingresp", undefined]])
  })

  it.each([4, 5] as const)("decodes the same packets however the stream is cut (v%i, 200 random cuttings)", (version) => {
    // Repeated and changing topics (the decoder reuses the last topic string), small and large payloads.
    const topics = ["a/b", "a/b", "a/c", "é/ü", "a/b", "x".repeat(300), "x".repeat(300), "a/b"]
    const packets: Array<Packet> = topics.map((topic, i) => ({
      cmd: "publish",
      topic,
      payload: Buffer.alloc(i % 3 === 0 ? 20_000 : i, i),
      qos: (i % 3) as 0 | 1 | 2,
      dup: false,
      retain: i % 2 === 0,
      ...(i % 3 > 0 ? { messageId: i + 1 } : {})
    }))
    packets.push({ cmd: "puback", messageId: 7 }, { cmd: "pingresp" })
    const stream = concat(packets.map((p) => encode(p, version)))
    let seed = version
    const random = () => (seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648) / 2_147_483_648
    for (let run = 0; run < 200; run++) {
      const c = collector(version)
      let at = 0
      while (at < stream.length) {
        const size = 1 + Math.floor(random() * (random() < 0.5 ? 8 : 30_000))
        c.push(stream.subarray(at, at + size))
        at += size
      }
      expect(c.errors).toEqual([])
      expect(c.packets).toHaveLength(packets.length)
      packets.forEach((p, i) => expect(c.packets[i]).toMatchObject(p))
    }
  })

  it("accepts a plain Uint8Array view with a byte offset (not a Buffer)", () => {
    const bytes = encode({ cmd: "puback", messageId: 0x1234 }, 4)
    const backing = new ArrayBuffer(16)
    const view = new Uint8Array(backing, 5, bytes.length)
    new Uint8Array(backing).fill(0xff) // garbage around the view must not be read
    view.set(bytes)
    expect(Buffer.isBuffer(view)).toBe(false)
    const c = collector(4)
    c.push(view)
    expect(c.errors).toEqual([])
    expect(c.packets).toHaveLength(1)
    expect(c.packets[0]).toMatchObject({ cmd: "puback", messageId: 0x1234 })
  })
})

// ---------------------------------------------------------------------------
// Malformed input
// ---------------------------------------------------------------------------

describe("makeDecoder malformed input", () => {
  const pingresp = encode({ cmd: "pingresp" }, 4)

  it.each([
    ["a PUBLISH with both QoS bits set", 4, [0x36, 0x05, 0x00, 0x01, 0x61, 0x00, 0x01]],
    ["a CONNACK with reserved flag bits set", 4, [0x20, 0x02, 0x02, 0x00]],
    ["a packet type 0 (reserved)", 4, [0x00, 0x00]],
    ["an AUTH packet in v3.1.1", 4, [0xf0, 0x00]],
    ["a PINGRESP with flag bits set", 4, [0xd1, 0x00]],
    ["a remaining length over 4 bytes", 4, [0x30, 0xff, 0xff, 0xff, 0xff, 0x01]],
    ["a PUBLISH with both QoS bits set (v5)", 5, [0x36, 0x06, 0x00, 0x01, 0x61, 0x00, 0x01, 0x00]]
  ] as const)("%s calls onError exactly once and then ignores further input", (_, version, bad) => {
    const c = collector(version)
    c.push(Uint8Array.from(bad))
    expect(c.errors).toHaveLength(1)
    expect(typeof c.errors[0]).toBe("string")
    expect(c.errors[0].length).toBeGreaterThan(0)
    // more valid and invalid input afterwards: no packet, no second error
    c.push(pingresp)
    c.push(Uint8Array.from(bad))
    c.push(pingresp)
    expect(c.packets).toEqual([])
    expect(c.errors).toHaveLength(1)
  })

  it("reports the mqtt-packet reason", () => {
    const c = collector(4)
    c.push(Uint8Array.from([0x36, 0x05, 0x00, 0x01, 0x61, 0x00, 0x01]))
    expect(c.errors).toEqual(["Packet must not have both QoS bits set to 1"])
  })

  it("delivers packets before the malformed one, and none after it in the same chunk", () => {
    const c = collector(4)
    const bad = Uint8Array.from([0x36, 0x05, 0x00, 0x01, 0x61, 0x00, 0x01])
    c.push(concat([pingresp, encode({ cmd: "puback", messageId: 3 }, 4), bad, pingresp, pingresp]))
    expect(c.packets.map((p) => p.cmd)).toEqual(["pingresp", "puback"])
    expect(c.errors).toHaveLength(1)
  })

  it("a malformed packet split over chunks is reported once", () => {
    const c = collector(4)
    for (const byte of [0x36, 0x05, 0x00, 0x01, 0x61, 0x00, 0x01]) c.push(Uint8Array.of(byte))
    c.push(pingresp)
    expect(c.errors).toHaveLength(1)
    expect(c.packets).toEqual([])
  })

  it("decoders are independent: an error in one does not affect another", () => {
    const broken = collector(4)
    const healthy = collector(4)
    broken.push(Uint8Array.from([0x00, 0x00]))
    healthy.push(pingresp)
    expect(broken.errors).toHaveLength(1)
    expect(healthy.errors).toEqual([])
    expect(healthy.packets).toHaveLength(1)
  })
})
