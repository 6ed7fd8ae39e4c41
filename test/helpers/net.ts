/**
 * Small TCP utilities for the broker helpers. They use real timers (not the
 * Effect Clock) so they stay bounded even under a TestClock.
 */
import * as Net from "node:net"
import { Effect } from "effect"

/** A port that was free on 127.0.0.1 a moment ago (bind port 0, read it, close). */
export const freePort: Effect.Effect<number> = Effect.callback<number>((resume) => {
  const server = Net.createServer()
  server.unref()
  server.once("error", (error) => resume(Effect.die(error)))
  server.listen(0, "127.0.0.1", () => {
    const { port } = server.address() as Net.AddressInfo
    server.close(() => resume(Effect.succeed(port)))
  })
})

/** Sleeps `ms` milliseconds of wall-clock time. */
export const sleepReal = (ms: number): Effect.Effect<void> =>
  Effect.callback<void>((resume) => {
    const timer = setTimeout(() => resume(Effect.void), ms)
    return Effect.sync(() => clearTimeout(timer))
  })

/** True when a TCP connection to `host:port` succeeds (the socket is closed right away). */
export const canConnect = (host: string, port: number): Effect.Effect<boolean> =>
  Effect.callback<boolean>((resume) => {
    const socket = Net.connect({ host, port })
    const done = (ok: boolean) => {
      socket.destroy()
      resume(Effect.succeed(ok))
    }
    socket.setTimeout(1_000, () => done(false))
    socket.once("connect", () => done(true))
    socket.once("error", () => done(false))
    return Effect.sync(() => socket.destroy())
  })

/**
 * Polls `host:port` every 50 ms until it accepts a connection (true), `giveUp()`
 * returns true or `timeoutMs` elapsed (false).
 */
export const waitForPort = (
  host: string,
  port: number,
  timeoutMs: number,
  giveUp: () => boolean = () => false
): Effect.Effect<boolean> =>
  Effect.gen(function*() {
    const deadline = Date.now() + timeoutMs
    while (Date.now() < deadline) {
      if (giveUp()) return false
      if (yield* canConnect(host, port)) return !giveUp()
      yield* sleepReal(50)
    }
    return false
  })
