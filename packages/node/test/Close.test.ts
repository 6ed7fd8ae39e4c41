/**
 * Closing the client flushes what it wrote: a QoS 0 receipt completes once
 * the bytes are handed to Node, which may still hold them when the client is
 * closed; closing waits until they have left the process (up to 5 s), so a
 * process that exits right after closing loses nothing it was told was
 * written. Over TCP and over WebSocket (whose frames wait in `ws`'s and then
 * the TCP socket's buffers).
 */
import { describe, expect, it } from "@effect/vitest"
import { NodeMqttClient } from "@effect-mqtt/node"
import { Effect, Exit, Fiber, Option, Scope } from "effect"
import * as Net from "node:net"
import { WebSocketServer } from "@effect/platform-node/NodeWS"

interface StalledBroker {
  readonly url: string
  readonly resume: () => void
  readonly publishes: () => number
  readonly ended: Promise<void>
}

/**
 * Reads MQTT frames (type byte, remaining length, body) from the client's bytes: answers the first CONNECT with
 * `onConnect` and counts PUBLISH packets.
 */
const frameCounter = (onConnect: () => void) => {
  let publishes = 0
  let connected = false
  let buffered = Buffer.alloc(0)
  const feed = (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk])
    for (;;) {
      if (buffered.length < 2) return
      let remaining = 0
      let multiplier = 1
      let at = 1
      let byte: number
      do {
        if (at >= buffered.length) return
        byte = buffered[at++]
        remaining += (byte & 0x7f) * multiplier
        multiplier *= 128
      } while (byte & 0x80)
      if (buffered.length < at + remaining) return
      const type = buffered[0] >> 4
      buffered = buffered.subarray(at + remaining)
      if (type === 1 && !connected) {
        connected = true
        onConnect()
      } else if (type === 3) publishes++
    }
  }
  return { feed, publishes: () => publishes }
}

const CONNACK = Buffer.from([0x20, 0x02, 0x00, 0x00])

/**
 * What both brokers share: their one client connection, which answers CONNECT
 * and then stops reading until `resume`; the PUBLISH packets read; `ended`
 * once the client's side ended.
 */
const makeStalledConnection = () => {
  let resumeReading: () => void = () => {}
  let counter: ReturnType<typeof frameCounter> | undefined
  let endedResolve: () => void = () => {}
  const ended = new Promise<void>((resolve) => endedResolve = resolve)
  return {
    /** A client connected: returns what to feed its bytes to. */
    accept: (connection: { readonly answer: (bytes: Buffer) => void; readonly pause: () => void; readonly resume: () => void }) => {
      resumeReading = connection.resume
      counter = frameCounter(() => {
        connection.answer(CONNACK)
        connection.pause()
      })
      return counter.feed
    },
    end: () => endedResolve(),
    broker: (url: string): StalledBroker => ({
      url,
      resume: () => resumeReading(),
      publishes: () => counter?.publishes() ?? 0,
      ended
    })
  }
}

/**
 * A broker that answers CONNECT and then stops reading until `resume`: our
 * writes back up in the kernel, then in Node's buffer.
 */
const stalledTcpBroker = Effect.acquireRelease(
  Effect.callback<StalledBroker & { readonly server: Net.Server }>((resume) => {
    const stalled = makeStalledConnection()
    const server = Net.createServer((socket) => {
      socket.on("data", stalled.accept({ answer: (bytes) => socket.write(bytes), pause: () => socket.pause(), resume: () => socket.resume() }))
      socket.on("end", stalled.end)
      socket.on("close", stalled.end)
      socket.on("error", () => {})
    })
    server.listen(0, "127.0.0.1", () =>
      resume(Effect.succeed({ ...stalled.broker(`mqtt://127.0.0.1:${(server.address() as Net.AddressInfo).port}`), server })))
  }),
  ({ server }) =>
    Effect.callback<void>((resume) => {
      server.close(() => resume(Effect.void))
    })
)

/** The same over WebSocket: the server stops reading the TCP socket under the WebSocket (`ws.pause()`). */
const stalledWebSocketBroker = Effect.acquireRelease(
  Effect.callback<StalledBroker & { readonly server: InstanceType<typeof WebSocketServer> }>((resume) => {
    const stalled = makeStalledConnection()
    const server = new WebSocketServer({
      host: "127.0.0.1",
      port: 0,
      perMessageDeflate: false,
      handleProtocols: (protocols) => protocols.has("mqtt") ? "mqtt" : false
    })
    server.on("connection", (ws) => {
      const feed = stalled.accept({ answer: (bytes) => ws.send(bytes), pause: () => ws.pause(), resume: () => ws.resume() })
      ws.on("message", (data) => feed(Buffer.isBuffer(data) ? data : Buffer.from(data as ArrayBuffer)))
      ws.on("close", stalled.end)
      ws.on("error", () => {})
    })
    server.once("listening", () =>
      resume(Effect.succeed({ ...stalled.broker(`ws://127.0.0.1:${(server.address() as Net.AddressInfo).port}/mqtt`), server })))
  }),
  ({ server }) =>
    Effect.callback<void>((resume) => {
      for (const client of server.clients) client.terminate()
      server.close(() => resume(Effect.void))
    })
)

describe("closing the client", () => {
  it.live.each([
    { transport: "TCP", broker: stalledTcpBroker as Effect.Effect<StalledBroker, never, Scope.Scope> },
    { transport: "WebSocket", broker: stalledWebSocketBroker as Effect.Effect<StalledBroker, never, Scope.Scope> }
  ])("$transport: waits until what it wrote has left the process, also after DISCONNECT could not be written", ({ broker: stalledBroker }) =>
    Effect.gen(function*() {
      const broker = yield* stalledBroker
      const clientScope = yield* Scope.make()
      const client = yield* NodeMqttClient.make({ url: broker.url, keepAlive: 0, capacity: 100_000 }).pipe(
        Scope.provide(clientScope)
      )
      yield* client.stats.pipe(Effect.repeat({ until: (stats) => stats.connected }))
      // 16 MiB of QoS 0 for a broker that reads nothing: the kernel's buffers fill, then Node's.
      const payload = new Uint8Array(1024)
      const receipts = []
      for (let i = 0; i < 16_384; i++) receipts.push(yield* client.publish({ topic: "flush", payload }))
      yield* Effect.sleep("200 millis")

      // Closing tries DISCONNECT for 1 s (it cannot be written), then ends the connection: the close must
      // still wait for the bytes in Node's buffer, which leave once the broker reads again, 2 s from now.
      const startedAt = Date.now()
      const closing = yield* Scope.close(clientScope, Exit.void).pipe(
        Effect.andThen(Effect.sync(() => Date.now() - startedAt)),
        Effect.forkDetach
      )
      yield* Effect.sleep("2 seconds")
      broker.resume()
      const closeMillis = yield* Fiber.join(closing)
      yield* Effect.promise(() => broker.ended)
      // Every receipt is settled: written, or failed (queued behind, or in the write the close cut short).
      const outcomes = yield* Effect.forEach(receipts, (receipt) => Effect.exit(receipt.acknowledged).pipe(Effect.timeoutOption("1 second")))
      expect(outcomes.every(Option.isSome)).toBe(true)
      const written = outcomes.filter((outcome) => Option.isSome(outcome) && Exit.isSuccess(outcome.value)).length
      expect(closeMillis).toBeGreaterThanOrEqual(1900)
      expect(written).toBeGreaterThan(0)
      expect(broker.publishes()).toBeGreaterThanOrEqual(written)
    }).pipe(Effect.scoped, Effect.timeout("20 seconds")))
})
