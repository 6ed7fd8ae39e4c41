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
import { WebSocket, WebSocketServer } from "@effect/platform-node/NodeWS"

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
 * A broker that answers CONNECT and then stops reading until `resume`: our
 * writes back up in the kernel, then in Node's buffer. Counts the PUBLISH
 * packets it reads and resolves `ended` when the client's side ends.
 */
const stalledTcpBroker = Effect.acquireRelease(
  Effect.callback<StalledBroker & { readonly server: Net.Server }>((resume) => {
    let connection: Net.Socket | undefined
    let endedResolve: () => void = () => {}
    const ended = new Promise<void>((resolve) => endedResolve = resolve)
    let counter: ReturnType<typeof frameCounter> | undefined
    const server = Net.createServer((socket) => {
      connection = socket
      counter = frameCounter(() => {
        socket.write(CONNACK)
        socket.pause() // and read nothing more until resumed
      })
      socket.on("data", counter.feed)
      socket.on("end", () => endedResolve())
      socket.on("close", () => endedResolve())
      socket.on("error", () => {})
    })
    server.listen(0, "127.0.0.1", () =>
      resume(Effect.succeed({
        url: `mqtt://127.0.0.1:${(server.address() as Net.AddressInfo).port}`,
        resume: () => connection?.resume(),
        publishes: () => counter?.publishes() ?? 0,
        ended,
        server
      })))
  }),
  ({ server }) =>
    Effect.callback<void>((resume) => {
      server.close(() => resume(Effect.void))
    })
)

/** The same over WebSocket: the server stops reading the TCP socket under the WebSocket (`ws.pause()`). */
const stalledWebSocketBroker = Effect.acquireRelease(
  Effect.callback<StalledBroker & { readonly server: InstanceType<typeof WebSocketServer> }>((resume) => {
    let connection: WebSocket | undefined
    let endedResolve: () => void = () => {}
    const ended = new Promise<void>((resolve) => endedResolve = resolve)
    let counter: ReturnType<typeof frameCounter> | undefined
    const server = new WebSocketServer({
      host: "127.0.0.1",
      port: 0,
      perMessageDeflate: false,
      handleProtocols: (protocols) => protocols.has("mqtt") ? "mqtt" : false
    })
    server.on("connection", (ws) => {
      connection = ws
      counter = frameCounter(() => {
        ws.send(CONNACK)
        ws.pause()
      })
      ws.on("message", (data) => counter!.feed(Buffer.isBuffer(data) ? data : Buffer.from(data as ArrayBuffer)))
      ws.on("close", () => endedResolve())
      ws.on("error", () => {})
    })
    server.once("listening", () =>
      resume(Effect.succeed({
        url: `ws://127.0.0.1:${(server.address() as Net.AddressInfo).port}/mqtt`,
        resume: () => connection?.resume(),
        publishes: () => counter?.publishes() ?? 0,
        ended,
        server
      })))
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
