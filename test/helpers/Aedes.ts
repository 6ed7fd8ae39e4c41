/**
 * Embedded aedes (MQTT 3.1.1) brokers for integration tests, listening on
 * 127.0.0.1 only and closed when the scope closes.
 *
 * aedes 1.x API: `await Aedes.createBroker(options)` (the default export only
 * throws a migration error) and `net.createServer(broker.handle)`.
 */
import * as Net from "node:net"
import { Aedes as AedesInstance, type AedesOptions } from "aedes"
import { Effect } from "effect"
import type { Scope } from "effect"
import { sleepReal } from "./net.js"

/** Options of {@link start}. */
export interface StartOptions {
  /** Fixed port; by default the OS picks one (port 0), kept for restarts. */
  readonly port?: number
  /** Options for every aedes instance (hooks such as `authenticate`, `keepaliveLimit`, ...). */
  readonly aedes?: AedesOptions
}

/** A running embedded aedes owned by the current scope. */
export interface Broker {
  readonly url: string
  readonly host: "127.0.0.1"
  readonly port: number
  /** Closes the listener, destroys every client socket abruptly (no DISCONNECT) and closes the broker. */
  readonly stop: Effect.Effect<void>
  /** Stops if running, then listens again on the same port with a fresh aedes instance (no sessions, no retained). */
  readonly restart: Effect.Effect<void>
  /** The current aedes instance (changes on restart), e.g. to subscribe to its events. */
  readonly instance: () => AedesInstance
  /** Number of PUBLISH packets received from clients since start (across restarts; $SYS excluded). */
  readonly publishedCount: Effect.Effect<number>
}

const HOST = "127.0.0.1" as const

interface Running {
  readonly broker: AedesInstance
  readonly server: Net.Server
  readonly sockets: Set<Net.Socket>
}

/** Resolves when `register(done)` calls `done`, or after `ms` (then it gives up waiting). */
const bounded = (ms: number, register: (done: () => void) => void): Effect.Effect<void> =>
  Effect.raceFirst(Effect.callback<void>((resume) => register(() => resume(Effect.void))), sleepReal(ms))

const listen = (options: StartOptions, port: number, onPublish: () => void): Effect.Effect<Running> =>
  Effect.gen(function*() {
    const broker = yield* Effect.promise(() => AedesInstance.createBroker(options.aedes))
    broker.on("publish", (_packet, client) => {
      if (client !== null) onPublish()
    })
    const sockets = new Set<Net.Socket>()
    const server = Net.createServer((socket) => {
      sockets.add(socket)
      socket.once("close", () => sockets.delete(socket))
      broker.handle(socket)
    })
    yield* Effect.callback<void>((resume) => {
      server.once("error", (error) => {
        broker.close()
        resume(Effect.die(error))
      })
      server.listen(port, HOST, () => resume(Effect.void))
    })
    return { broker, server, sockets }
  })

const close = ({ broker, server, sockets }: Running): Effect.Effect<void> =>
  Effect.gen(function*() {
    server.close()
    for (const socket of sockets) socket.destroy()
    yield* bounded(2_000, (done) => broker.close(done))
  })

/**
 * Starts an embedded aedes broker on 127.0.0.1 for the lifetime of the current
 * scope. The port is chosen by the OS unless `options.port` is given.
 */
export const start = (options: StartOptions = {}): Effect.Effect<Broker, never, Scope.Scope> =>
  Effect.gen(function*() {
    let published = 0
    const onPublish = () => void published++
    let current: Running | undefined = yield* Effect.acquireRelease(
      listen(options, options.port ?? 0, onPublish),
      () => Effect.suspend(() => current === undefined ? Effect.void : close(current))
    )
    const port = (current.server.address() as Net.AddressInfo).port
    const stop = Effect.suspend(() => {
      const running = current
      current = undefined
      return running === undefined ? Effect.void : close(running)
    })
    let latest = current.broker
    return {
      url: `mqtt://${HOST}:${port}`,
      host: HOST,
      port,
      stop,
      restart: Effect.gen(function*() {
        yield* stop
        const running = yield* listen(options, port, onPublish)
        current = running
        latest = running.broker
      }).pipe(Effect.uninterruptible),
      instance: () => latest,
      publishedCount: Effect.sync(() => published)
    } satisfies Broker
  })
