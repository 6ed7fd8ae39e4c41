/**
 * A WebSocket-to-TCP bridge in front of an MQTT broker, for the WebSocket
 * transport tests: it accepts `ws://127.0.0.1:<port>/...` with the `mqtt`
 * subprotocol, records the handshake, and relays bytes to the broker's TCP
 * port. Towards the client it re-frames the broker's bytes at random (seeded)
 * cut points after coalescing what arrived in the same tick, so MQTT packets
 * span WebSocket frames and several packets share one frame.
 */
import { WebSocketServer } from "@effect/platform-node/NodeWS"
import * as Net from "node:net"
import { Effect } from "effect"
import type { Scope } from "effect"
import type { IncomingHttpHeaders } from "node:http"

/** What the bridge saw. */
export interface WsBridge {
  readonly url: string
  /** One entry per accepted WebSocket: request path, offered subprotocols, chosen one, headers. */
  readonly handshakes: ReadonlyArray<{
    readonly path: string
    readonly protocols: ReadonlyArray<string>
    readonly protocol: string
    readonly headers: IncomingHttpHeaders
  }>
  /** Frames sent to clients, and how many of them were binary (all of them should be). */
  readonly framesToClient: () => number
  /** Frames received from clients, and whether any was a text frame. */
  readonly framesFromClient: () => number
  readonly textFramesFromClient: () => number
  /**
   * Over everything the broker sent to clients: packets cut across two or more
   * frames, and frames that carried (a part of) two or more packets.
   */
  readonly framing: () => { readonly packets: number; readonly spanning: number; readonly sharing: number }
}

/** A small seeded PRNG (mulberry32). */
const prng = (seed: number) => {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** Packet boundaries (end offsets) of a complete MQTT byte stream. */
const packetEnds = (stream: Buffer): Array<number> => {
  const ends: Array<number> = []
  let at = 0
  while (at < stream.length) {
    let length = 0
    let multiplier = 1
    let i = at + 1
    for (;;) {
      if (i >= stream.length) return ends // incomplete tail
      const byte = stream[i++]
      length += (byte & 0x7f) * multiplier
      multiplier *= 128
      if ((byte & 0x80) === 0) break
    }
    at = i + length
    if (at > stream.length) return ends
    ends.push(at)
  }
  return ends
}

/** Starts a bridge to `brokerPort` on 127.0.0.1 for the current scope; frames are at most `maxFrame` bytes. */
export const start = (
  brokerPort: number,
  options: { readonly seed?: number; readonly maxFrame?: number } = {}
): Effect.Effect<WsBridge, never, Scope.Scope> =>
  Effect.gen(function*() {
    const random = prng(options.seed ?? 42)
    const maxFrame = options.maxFrame ?? 16 * 1024
    const handshakes: Array<WsBridge["handshakes"][number]> = []
    let framesToClient = 0
    let framesFromClient = 0
    let textFramesFromClient = 0
    // Per connection: the bytes sent to the client and the frame boundaries (end offsets).
    const downstream: Array<{ chunks: Array<Buffer>; frameEnds: Array<number>; sent: number }> = []
    const sockets = new Set<Net.Socket>()

    const server = yield* Effect.acquireRelease(
      Effect.callback<InstanceType<typeof WebSocketServer>>((resume) => {
        const wss = new WebSocketServer({
          host: "127.0.0.1",
          port: 0,
          perMessageDeflate: false,
          handleProtocols: (protocols) => protocols.has("mqtt") ? "mqtt" : false
        })
        wss.once("listening", () => resume(Effect.succeed(wss)))
        wss.once("error", (error) => resume(Effect.die(error)))
      }),
      (wss) =>
        Effect.callback<void>((resume) => {
          for (const socket of sockets) socket.destroy()
          for (const client of wss.clients) client.terminate()
          wss.close(() => resume(Effect.void))
        })
    )

    server.on("connection", (ws, request) => {
      const offered = String(request.headers["sec-websocket-protocol"] ?? "").split(",").map((p) => p.trim())
      handshakes.push({ path: request.url ?? "", protocols: offered, protocol: ws.protocol, headers: request.headers })
      const record = { chunks: [] as Array<Buffer>, frameEnds: [] as Array<number>, sent: 0 }
      downstream.push(record)
      const tcp = Net.connect({ host: "127.0.0.1", port: brokerPort })
      sockets.add(tcp)
      tcp.setNoDelay(true)
      let pending: Array<Buffer> = []
      let scheduled = false
      const flush = () => {
        scheduled = false
        const data = Buffer.concat(pending)
        pending = []
        let at = 0
        while (at < data.length) {
          // Random frame sizes: half of them 1-16 bytes (small packets get cut too), the others up to maxFrame.
          const limit = random() < 0.5 ? 16 : maxFrame
          const size = Math.min(data.length - at, 1 + Math.floor(random() * limit))
          const frame = data.subarray(at, at + size)
          at += size
          if (ws.readyState !== ws.OPEN) return
          ws.send(frame, { binary: true })
          framesToClient++
          record.chunks.push(Buffer.from(frame))
          record.sent += frame.length
          record.frameEnds.push(record.sent)
        }
      }
      tcp.on("data", (chunk: Buffer) => {
        pending.push(chunk)
        if (!scheduled) {
          scheduled = true
          setImmediate(flush)
        }
      })
      ws.on("message", (data, isBinary) => {
        framesFromClient++
        if (!isBinary) textFramesFromClient++
        const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer)
        tcp.write(bytes)
      })
      const close = () => {
        tcp.destroy()
        ws.terminate()
        sockets.delete(tcp)
      }
      tcp.on("error", close)
      tcp.on("close", close)
      ws.on("close", close)
      ws.on("error", close)
    })

    const { port } = server.address() as Net.AddressInfo
    return {
      url: `ws://127.0.0.1:${port}`,
      handshakes,
      framesToClient: () => framesToClient,
      framesFromClient: () => framesFromClient,
      textFramesFromClient: () => textFramesFromClient,
      framing: () => {
        let packets = 0
        let spanning = 0
        let sharing = 0
        for (const record of downstream) {
          const ends = packetEnds(Buffer.concat(record.chunks))
          packets += ends.length
          // A packet spans frames when a frame boundary falls strictly inside it.
          let start = 0
          let f = 0
          for (const end of ends) {
            while (f < record.frameEnds.length && record.frameEnds[f] <= start) f++
            if (f < record.frameEnds.length && record.frameEnds[f] < end) spanning++
            start = end
          }
          // A frame is shared when a packet boundary falls strictly inside it.
          let frameStart = 0
          let p = 0
          for (const frameEnd of record.frameEnds) {
            while (p < ends.length && ends[p] <= frameStart) p++
            if (p < ends.length && ends[p] < frameEnd) sharing++
            frameStart = frameEnd
          }
        }
        return { packets, spanning, sharing }
      }
    } satisfies WsBridge
  })
