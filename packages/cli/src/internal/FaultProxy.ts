/**
 * A TCP proxy on 127.0.0.1 that can take the broker "away": pause forwarding
 * (a black hole: connections stay open, bytes stop), cut every connection and
 * refuse new ones, and bring it back. Used by the demo to show what the
 * client does when the network fails.
 */
import * as Net from "node:net"
import { Effect } from "effect"
import type * as Scope from "effect/Scope"

export interface FaultProxy {
  readonly port: number
  readonly url: string
  /** Stops forwarding bytes in both directions; connections stay open. */
  readonly pause: Effect.Effect<void>
  /** Forwards again, delivering what was held. */
  readonly resume: Effect.Effect<void>
  /** Destroys every connection and refuses new ones until `restore`. */
  readonly cut: Effect.Effect<void>
  /** Accepts connections again. */
  readonly restore: Effect.Effect<void>
}

export const start = (target: { readonly host: string; readonly port: number }): Effect.Effect<FaultProxy, never, Scope.Scope> =>
  Effect.gen(function*() {
    const pairs = new Set<{ client: Net.Socket; upstream: Net.Socket }>()
    let refusing = false
    let paused = false
    const server = Net.createServer((client) => {
      if (refusing) return client.destroy()
      const upstream = Net.createConnection({ host: target.host, port: target.port })
      const pair = { client, upstream }
      pairs.add(pair)
      client.pipe(upstream)
      upstream.pipe(client)
      if (paused) {
        client.pause()
        upstream.pause()
      }
      const close = () => {
        pairs.delete(pair)
        client.destroy()
        upstream.destroy()
      }
      client.on("error", close).on("close", close)
      upstream.on("error", close).on("close", close)
    })
    const port = yield* Effect.acquireRelease(
      Effect.callback<number>((resume) => {
        server.listen(0, "127.0.0.1", () => resume(Effect.succeed((server.address() as Net.AddressInfo).port)))
      }),
      () =>
        Effect.callback<void>((resume) => {
          for (const { client, upstream } of pairs) {
            client.destroy()
            upstream.destroy()
          }
          server.close(() => resume(Effect.void))
        })
    )
    const setPaused = (value: boolean) =>
      Effect.sync(() => {
        paused = value
        for (const { client, upstream } of pairs) {
          if (value) {
            client.unpipe(upstream)
            upstream.unpipe(client)
            client.pause()
            upstream.pause()
          } else {
            client.pipe(upstream)
            upstream.pipe(client)
          }
        }
      })
    return {
      port,
      url: `mqtt://127.0.0.1:${port}`,
      pause: setPaused(true),
      resume: setPaused(false),
      cut: Effect.sync(() => {
        refusing = true
        for (const { client, upstream } of pairs) {
          client.destroy()
          upstream.destroy()
        }
        pairs.clear()
      }),
      restore: Effect.sync(() => {
        refusing = false
      })
    }
  })
