/**
 * Outgoing work is not starved by an incoming flood, and the acknowledgements
 * we owe are not starved by our own outgoing burst: one client receives a
 * continuous QoS 0 flood and a QoS 1 stream while it publishes its own burst.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Stream } from "effect"
import { connect } from "../helpers/Clients.ts"
import { Mosquitto, requireBroker } from "../helpers/index.ts"
import { count, makeTally, publishAll, report } from "./shared.ts"

describe("fairness between directions", () => {
  it.live("a client under an incoming flood still gets its own 2,000 QoS 1 publishes acknowledged, and acks what it receives", () =>
    Effect.gen(function*() {
      const broker = yield* Mosquitto.start({ config: "max_queued_messages 0" }).pipe(requireBroker)
      const flooder = yield* connect(broker.url, { capacity: 4096 })
      const sender = yield* connect(broker.url)
      const client = yield* connect(broker.url, { capacity: 4096 })
      let flooded = 0
      yield* (yield* client.subscribeScoped("fair/flood", { qos: 0 })).pipe(
        Stream.runForEach(() => Effect.sync(() => void flooded++)),
        Effect.forkScoped
      )
      const incoming = makeTally(2_000)
      yield* count(yield* client.subscribeScoped("fair/in", { qos: 1 }), incoming).pipe(Effect.forkScoped)
      // the flood runs until the test ends
      const payload = new Uint8Array(256)
      const flood = yield* Effect.forever(flooder.publish({ topic: "fair/flood", payload })).pipe(Effect.forkScoped)
      yield* Effect.sleep("200 millis")
      const floodedBefore = flooded
      const started = Date.now()
      // our own burst out, and a QoS 1 stream in that needs our PUBACKs, both during the flood
      yield* Effect.all([
        publishAll(client, "fair/out", 2_000, 1),
        publishAll(sender, "fair/in", 2_000, 1)
      ], { concurrency: 2 })
      yield* Deferred.await(incoming.complete)
      const millis = Date.now() - started
      const floodedDuring = flooded - floodedBefore
      yield* Fiber.interrupt(flood)
      yield* report("fairness", { outgoingAcknowledged: 2_000, incomingQos1: incoming.distinct, floodMessagesDuring: floodedDuring, millis })
      expect(floodedBefore).toBeGreaterThan(0)
      expect(floodedDuring).toBeGreaterThan(0)
      expect(incoming.distinct).toBe(2_000)
    }).pipe(Effect.scoped, Effect.timeout("60 seconds")), 70_000)
})
