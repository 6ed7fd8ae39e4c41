/**
 * A TCP proxy on 127.0.0.1 for fault testing: put it between a client and a
 * broker, then cut, black-hole, delay or throttle the link on command. The
 * effect-mqtt test suite and demo use it; it is public so that applications
 * can test their own behaviour when the network to the broker fails.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { FaultProxy, NodeMqttClient } from "@effect-mqtt/node"
 *
 * const program = Effect.gen(function*() {
 *   const proxy = yield* FaultProxy.start({ host: "127.0.0.1", port: 1883 })
 *   const client = yield* NodeMqttClient.make({ url: proxy.url })
 *   yield* proxy.cut({ refuseFor: "2 seconds" }) // the broker "goes away" for 2 s
 *   yield* client.publishAndWait({ topic: "t", payload: "still delivered", qos: 1 })
 * }).pipe(Effect.scoped)
 * ```
 *
 * @since 0.1.0
 */
import * as Net from "node:net"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"

/**
 * The proxy's controls.
 *
 * @since 0.1.0
 */
export interface FaultProxy {
  readonly port: number
  /** `mqtt://127.0.0.1:<port>` */
  readonly url: string
  /**
   * Closes every open connection, both ways. With `atRandomByte`, each
   * connection is cut in the middle of the next chunk it carries (after a random
   * number of its bytes), or after 100 ms when no data comes. With `refuseFor`,
   * new connections are refused for that long (the broker is unreachable).
   */
  readonly cut: (options?: { readonly atRandomByte?: boolean; readonly refuseFor?: Duration.Input }) => Effect.Effect<void>
  /** Refuse (accept and close at once) new connections until `restore`. */
  readonly refuse: Effect.Effect<void>
  /** Accept new connections again. */
  readonly restore: Effect.Effect<void>
  /** Silently drop every byte of the open connections, which stay open (a black hole); new connections work. */
  readonly blackHole: Effect.Effect<void>
  /** Holds every byte of the open connections (nothing is lost) until `resume`. */
  readonly pause: Effect.Effect<void>
  readonly resume: Effect.Effect<void>
  /** Adds this much latency to every chunk, both ways (0 to stop). */
  readonly delay: (latency: Duration.Input) => Effect.Effect<void>
  /** Limits each direction of each connection to this many bytes per second (undefined to stop). */
  readonly throttle: (bytesPerSecond: number | undefined) => Effect.Effect<void>
  /** Connections accepted and bytes forwarded so far. */
  readonly stats: Effect.Effect<{ readonly connections: number; readonly bytes: number }>
}

interface Settings {
  latencyMillis: number
  bytesPerSecond: number | undefined
  paused: boolean
  bytes: number
}

/** One direction of one connection: an ordered queue of chunks, forwarded with latency and rate limits. */
class Lane {
  private readonly chunks: Array<Buffer> = []
  private busy = false
  private readonly from: Net.Socket
  private readonly to: Net.Socket
  private readonly settings: Settings
  private readonly destroy: () => void
  blackHoled = false
  cutArmed = false

  constructor(from: Net.Socket, to: Net.Socket, settings: Settings, destroy: () => void) {
    this.from = from
    this.to = to
    this.settings = settings
    this.destroy = destroy
    from.on("data", (chunk: Buffer) => this.push(chunk))
  }

  private push(chunk: Buffer) {
    if (this.blackHoled) return
    if (this.cutArmed) {
      const keep = Math.floor(Math.random() * chunk.length)
      if (keep > 0) this.to.write(chunk.subarray(0, keep))
      this.destroy()
      return
    }
    this.chunks.push(chunk)
    this.pump()
  }

  pump() {
    if (this.busy || this.settings.paused) return
    const chunk = this.chunks.shift()
    if (chunk === undefined) return
    const { latencyMillis, bytesPerSecond } = this.settings
    const wait = latencyMillis + (bytesPerSecond === undefined ? 0 : (chunk.length * 1000) / bytesPerSecond)
    const forward = () => {
      this.busy = false
      if (this.to.destroyed) return
      this.settings.bytes += chunk.length
      if (!this.to.write(chunk)) {
        // back-pressure: stop reading until the other side drains
        this.from.pause()
        this.to.once("drain", () => this.from.resume())
      }
      this.pump()
    }
    this.busy = true
    if (wait > 0) setTimeout(forward, wait)
    else forward()
  }
}

interface Link {
  readonly client: Net.Socket
  readonly upstream: Net.Socket
  readonly lanes: readonly [Lane, Lane]
  readonly destroy: () => void
}

/**
 * Starts a proxy to `target` for the lifetime of the current scope.
 *
 * @since 0.1.0
 */
export const start = (
  target: { readonly host: string; readonly port: number }
): Effect.Effect<FaultProxy, never, Scope.Scope> =>
  Effect.gen(function*() {
    const links = new Set<Link>()
    const settings: Settings = { latencyMillis: 0, bytesPerSecond: undefined, paused: false, bytes: 0 }
    let refusing = false
    let connections = 0
    let refuseTimer: ReturnType<typeof setTimeout> | undefined

    const server = Net.createServer((client) => {
      if (refusing) return void client.destroy()
      connections++
      const upstream = Net.createConnection({ host: target.host, port: target.port })
      client.setNoDelay(true)
      upstream.setNoDelay(true)
      const destroy = () => {
        links.delete(link)
        client.destroy()
        upstream.destroy()
      }
      const link: Link = {
        client,
        upstream,
        lanes: [new Lane(client, upstream, settings, destroy), new Lane(upstream, client, settings, destroy)],
        destroy
      }
      links.add(link)
      client.on("error", destroy).on("close", destroy)
      upstream.on("error", destroy).on("close", destroy)
    })

    const port = yield* Effect.acquireRelease(
      Effect.callback<number>((resume) => {
        server.listen(0, "127.0.0.1", () => resume(Effect.succeed((server.address() as Net.AddressInfo).port)))
      }),
      () =>
        Effect.callback<void>((resume) => {
          if (refuseTimer !== undefined) clearTimeout(refuseTimer)
          for (const link of links) link.destroy()
          server.close(() => resume(Effect.void))
        })
    )

    const cut: FaultProxy["cut"] = (options) =>
      Effect.sync(() => {
        if (options?.refuseFor !== undefined) {
          refusing = true
          if (refuseTimer !== undefined) clearTimeout(refuseTimer)
          refuseTimer = setTimeout(() => {
            refusing = false
          }, Duration.toMillis(Duration.fromInputUnsafe(options.refuseFor)))
        }
        for (const link of Array.from(links)) {
          if (options?.atRandomByte === true) {
            link.lanes[0].cutArmed = true
            link.lanes[1].cutArmed = true
            setTimeout(link.destroy, 100)
          } else {
            link.destroy()
          }
        }
      })

    return {
      port,
      url: `mqtt://127.0.0.1:${port}`,
      cut,
      refuse: Effect.sync(() => {
        refusing = true
      }),
      restore: Effect.sync(() => {
        if (refuseTimer !== undefined) clearTimeout(refuseTimer)
        refusing = false
      }),
      blackHole: Effect.sync(() => {
        for (const link of links) {
          link.lanes[0].blackHoled = true
          link.lanes[1].blackHoled = true
        }
      }),
      pause: Effect.sync(() => {
        settings.paused = true
      }),
      resume: Effect.sync(() => {
        settings.paused = false
        for (const link of links) {
          link.lanes[0].pump()
          link.lanes[1].pump()
        }
      }),
      delay: (latency) =>
        Effect.sync(() => {
          settings.latencyMillis = Duration.toMillis(Duration.fromInputUnsafe(latency))
        }),
      throttle: (bytesPerSecond) =>
        Effect.sync(() => {
          settings.bytesPerSecond = bytesPerSecond
        }),
      stats: Effect.sync(() => ({ connections, bytes: settings.bytes }))
    } satisfies FaultProxy
  })
