/**
 * Proves the broker helpers work, using only raw sockets and the mosquitto
 * command line clients (no client code from packages/).
 */
import * as Net from "node:net"
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit } from "effect"
import { Aedes, canConnect, Mosquitto, mosquittoPub, mosquittoSub, requireBroker, sleepReal } from "./helpers/index.js"

/** A raw TCP connection with a bounded `read(n)` of exactly n bytes. */
const rawSocket = (port: number) =>
  Effect.acquireRelease(
    Effect.callback<Net.Socket>((resume) => {
      const socket = Net.connect({ host: "127.0.0.1", port }, () => resume(Effect.succeed(socket)))
      socket.once("error", (error) => resume(Effect.die(error)))
    }),
    (socket) => Effect.sync(() => socket.destroy())
  ).pipe(Effect.map((socket) => {
    let buffered = Buffer.alloc(0)
    socket.on("data", (chunk: Buffer) => (buffered = Buffer.concat([buffered, chunk])))
    const read = (n: number, timeoutMs = 2_000) =>
      Effect.callback<Buffer>((resume) => {
        const check = () => {
          if (buffered.length < n) return
          cleanup()
          const out = buffered.subarray(0, n)
          buffered = buffered.subarray(n)
          resume(Effect.succeed(out))
        }
        const fail = (why: string) => () => {
          cleanup()
          resume(Effect.die(new Error(`read(${n}): ${why}, got ${buffered.toString("hex")}`)))
        }
        const onClose = fail("socket closed")
        const timer = setTimeout(fail("timeout"), timeoutMs)
        const cleanup = () => {
          clearTimeout(timer)
          socket.off("data", check)
          socket.off("close", onClose)
        }
        socket.on("data", check)
        socket.once("close", onClose)
        check()
        return Effect.sync(cleanup)
      })
    /** Resolves when the peer closed the connection (bounded). */
    const closed = Effect.callback<boolean>((resume) => {
      if (socket.destroyed || socket.readableEnded) return resume(Effect.succeed(true))
      const timer = setTimeout(() => resume(Effect.succeed(false)), 2_000)
      socket.once("close", () => {
        clearTimeout(timer)
        resume(Effect.succeed(true))
      })
    })
    return { socket, read, write: (bytes: Buffer) => Effect.sync(() => void socket.write(bytes)), closed }
  }))

// MQTT 3.1.1 packets, built by hand.
// CONNECT: protocol "MQTT", level 4, flags clean session, keepalive 10, client id "t1".
const CONNECT = Buffer.from([0x10, 14, 0, 4, ...Buffer.from("MQTT"), 4, 0x02, 0, 10, 0, 2, ...Buffer.from("t1")])
const CONNACK_OK = Buffer.from([0x20, 2, 0, 0])
// SUBSCRIBE packet id 1, "a/b" QoS 0 -> SUBACK packet id 1, granted QoS 0.
const SUBSCRIBE = Buffer.from([0x82, 8, 0, 1, 0, 3, ...Buffer.from("a/b"), 0])
const SUBACK = Buffer.from([0x90, 3, 0, 1, 0])
// PUBLISH QoS 0 "a/b" payload "hi".
const PUBLISH = Buffer.from([0x30, 7, 0, 3, ...Buffer.from("a/b"), ...Buffer.from("hi")])

describe("Mosquitto helper", () => {
  it.live("mosquitto_sub receives what mosquitto_pub publishes", () =>
    Effect.gen(function*() {
      const broker = yield* Mosquitto.start().pipe(requireBroker)
      assert.strictEqual(broker.url, `mqtt://127.0.0.1:${broker.port}`)
      const payload = Buffer.from([0x00, 0xff, 0x10, 0x41])
      const topic = `helpers/${broker.port}`
      // Retained, so the subscriber gets it whatever the start order.
      const pub = yield* mosquittoPub(["-h", broker.host, "-p", `${broker.port}`, "-t", topic, "-r", "-q", "1", "-s"], {
        stdin: payload
      }).pipe(requireBroker)
      assert.strictEqual(pub.code, 0, pub.stderr)
      const sub = yield* mosquittoSub(["-h", broker.host, "-p", `${broker.port}`, "-t", topic, "-C", "1", "-W", "5", "-N"])
        .pipe(requireBroker)
      assert.strictEqual(sub.code, 0, sub.stderr)
      assert.deepStrictEqual([...sub.stdout], [...payload])
    }))

  it.live("restart keeps the port and, with persistence, the retained messages", () =>
    Effect.gen(function*() {
      const broker = yield* Mosquitto.start({ persistence: true }).pipe(requireBroker)
      const args = ["-h", broker.host, "-p", `${broker.port}`, "-t", "persisted"]
      assert.strictEqual((yield* mosquittoPub([...args, "-r", "-q", "1", "-m", "kept"]).pipe(requireBroker)).code, 0)

      yield* broker.kill() // SIGTERM: mosquitto saves its database
      assert.isFalse(yield* canConnect(broker.host, broker.port))
      yield* broker.restart.pipe(requireBroker)
      assert.isTrue(yield* canConnect(broker.host, broker.port))

      const sub = yield* mosquittoSub([...args, "-C", "1", "-W", "5"]).pipe(requireBroker)
      assert.strictEqual(sub.stdout.toString(), "kept\n")
      assert.include(yield* broker.log, "Saving in-memory database")
    }))

  it.live("extra config lines are applied", () =>
    Effect.gen(function*() {
      const broker = yield* Mosquitto.start({ config: "max_packet_size 100" }).pipe(requireBroker)
      const pub = yield* mosquittoPub(["-h", broker.host, "-p", `${broker.port}`, "-t", "big", "-q", "1", "-m", "x".repeat(500)])
        .pipe(requireBroker)
      assert.notStrictEqual(pub.code, 0)
      assert.include(yield* broker.log, "disconnected due to oversize packet")
    }))

  it.live("a missing mosquitto is a clear failure, never a skip", () =>
    Effect.gen(function*() {
      const error = yield* Mosquitto.start({ bin: "/nonexistent/mosquitto" }).pipe(Effect.flip)
      assert.strictEqual(error._tag, "MosquittoUnavailable")
      assert.include(error.message, "mosquitto binary not found (/nonexistent/mosquitto)")

      const exit = yield* Mosquitto.start({ bin: "/nonexistent/mosquitto" }).pipe(requireBroker, Effect.exit)
      assert.isTrue(Exit.isFailure(exit) && Cause.hasDies(exit.cause))
      assert.include(String(Cause.squash((exit as Exit.Failure<unknown, unknown>).cause)), "mosquitto is required")
    }))

  it.live("a broker that cannot start fails with its log tail", () =>
    Effect.gen(function*() {
      const error = yield* Mosquitto.start({ config: "this_is_not_an_option 1" }).pipe(Effect.flip)
      assert.strictEqual(error._tag, "MosquittoUnavailable")
      assert.include(error.message, "this_is_not_an_option")

      // The port answers (first broker), but the second one could not bind it.
      const first = yield* Mosquitto.start().pipe(requireBroker)
      const taken = yield* Mosquitto.start({ port: first.port }).pipe(Effect.flip)
      assert.include(taken.message, "Address already in use")
    }))
})

describe("Aedes helper", () => {
  it.live("accepts a hand-built CONNECT and routes a PUBLISH", () =>
    Effect.gen(function*() {
      const broker = yield* Aedes.start()
      const client = yield* rawSocket(broker.port)
      yield* client.write(CONNECT)
      assert.deepStrictEqual(yield* client.read(4), CONNACK_OK)
      yield* client.write(SUBSCRIBE)
      assert.deepStrictEqual(yield* client.read(5), SUBACK)
      yield* client.write(PUBLISH)
      assert.deepStrictEqual(yield* client.read(PUBLISH.length), PUBLISH)
      // aedes emits "publish" after delivering to subscribers: poll (bounded).
      for (let i = 0; i < 40 && (yield* broker.publishedCount) === 0; i++) yield* sleepReal(50)
      assert.strictEqual(yield* broker.publishedCount, 1)
    }))

  it.live("stop drops clients abruptly, restart listens again on the same port", () =>
    Effect.gen(function*() {
      const broker = yield* Aedes.start()
      const first = yield* rawSocket(broker.port)
      yield* first.write(CONNECT)
      assert.deepStrictEqual(yield* first.read(4), CONNACK_OK)
      const instance = broker.instance()

      yield* broker.stop
      assert.isTrue(yield* first.closed)
      assert.isFalse(yield* canConnect(broker.host, broker.port))

      yield* broker.restart
      assert.notStrictEqual(broker.instance(), instance)
      const second = yield* rawSocket(broker.port)
      yield* second.write(CONNECT)
      assert.deepStrictEqual(yield* second.read(4), CONNACK_OK)
    }))
})
