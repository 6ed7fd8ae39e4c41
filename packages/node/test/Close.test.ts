/**
 * Closing the client flushes what it wrote. A QoS 0 receipt completes once
 * the bytes are handed to Node, which may still hold them (the kernel's
 * buffer being full) when the client is closed; closing waits until they have
 * left the process, so a process that exits right after closing loses nothing
 * it was told was written.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as ChildProcess from "node:child_process"
import * as Net from "node:net"
import { fileURLToPath } from "node:url"

const script = fileURLToPath(new URL("./fixtures/publishThenExit.mjs", import.meta.url))
const packageDir = fileURLToPath(new URL("..", import.meta.url))

/**
 * A broker that answers CONNECT and then reads slowly (one read every 2 ms),
 * so that what the client writes backs up, and counts the PUBLISH packets.
 */
const slowBroker = Effect.acquireRelease(
  Effect.callback<{ readonly port: number; readonly publishes: () => number; readonly ended: Promise<void>; readonly server: Net.Server }>(
    (resume) => {
      let publishes = 0
      let endedResolve: () => void = () => {}
      const ended = new Promise<void>((resolve) => endedResolve = resolve)
      const server = Net.createServer((socket) => {
        let buffered = Buffer.alloc(0)
        socket.on("data", (chunk: Buffer) => {
          buffered = Buffer.concat([buffered, chunk])
          for (;;) {
            let remaining = 0
            let multiplier = 1
            let at = 1
            let byte = 0x80
            while (byte & 0x80) {
              if (at >= buffered.length) break
              byte = buffered[at++]
              remaining += (byte & 0x7f) * multiplier
              multiplier *= 128
            }
            if (byte & 0x80 || buffered.length < at + remaining) break
            const type = buffered[0] >> 4
            buffered = buffered.subarray(at + remaining)
            if (type === 1) socket.write(Buffer.from([0x20, 0x02, 0x00, 0x00])) // CONNACK, accepted
            else if (type === 3) publishes++
          }
          socket.pause()
          setTimeout(() => socket.resume(), 2)
        })
        socket.on("close", () => endedResolve())
        socket.on("error", () => {})
      })
      server.listen(0, "127.0.0.1", () =>
        resume(Effect.succeed({ port: (server.address() as Net.AddressInfo).port, publishes: () => publishes, ended, server })))
    }
  ),
  ({ server }) => Effect.callback<void>((resume) => server.close(() => resume(Effect.void)))
)

describe("closing the client", () => {
  it.live("flushes the QoS 0 messages it wrote before the process exits", () =>
    Effect.gen(function*() {
      const broker = yield* slowBroker
      const count = 20_000 // 20 MiB: more than the kernel's buffers hold, so the last writes wait in Node
      const exitCode = yield* Effect.callback<number | null>((resume) => {
        const child = ChildProcess.spawn(process.execPath, [script, String(broker.port), String(count)], {
          cwd: packageDir,
          stdio: ["ignore", "inherit", "inherit"]
        })
        child.on("exit", (code) => resume(Effect.succeed(code)))
      })
      expect(exitCode).toBe(0)
      yield* Effect.promise(() => broker.ended)
      expect(broker.publishes()).toBe(count)
    }).pipe(Effect.scoped, Effect.timeout("30 seconds")))
})
