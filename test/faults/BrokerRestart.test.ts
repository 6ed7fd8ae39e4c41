/**
 * Fault test 3: mosquitto is killed with SIGKILL in the middle of the stream
 * and restarted 2 s later on the same port, with persistence on. Persistent
 * sessions on both sides: no QoS 1 message is lost, no QoS 2 message is
 * delivered twice.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect } from "effect"
import { connect } from "../helpers/Clients.ts"
import { Mosquitto, requireBroker } from "../helpers/index.ts"
import { count, fastReconnect, makeTally, publishAll, report } from "./shared.ts"

const TOTAL = 3_000
const KILL_AT = 1_000

// Save the database after every change, so that SIGKILL loses nothing the broker acknowledged.
const config = ["max_queued_messages 0", "autosave_interval 1", "autosave_on_changes true"].join("\n")

describe("broker killed with SIGKILL and restarted", () => {
  it.live(`QoS 1 and QoS 2, ${TOTAL} messages each: no QoS 1 loss, no QoS 2 duplicate`, () =>
    Effect.gen(function*() {
      const broker = yield* Mosquitto.start({ persistence: true, config }).pipe(requireBroker)
      const options = { cleanSession: false, reconnect: fastReconnect } as const
      const subscriber = yield* connect(broker.url, { ...options, clientId: "restart-sub" })
      const publisher = yield* connect(broker.url, { ...options, clientId: "restart-pub" })
      const qos1 = makeTally(TOTAL)
      const qos2 = makeTally(TOTAL)
      let killed = false
      const killOnce = (distinct: number) =>
        distinct < KILL_AT || killed ? Effect.void : Effect.gen(function*() {
          killed = true
          yield* broker.kill("SIGKILL")
          yield* Effect.sleep("2 seconds").pipe(Effect.andThen(broker.restart), Effect.orDie, Effect.forkDetach)
        })
      yield* count(yield* subscriber.subscribeScoped("restart/1", { qos: 1 }), qos1, killOnce).pipe(Effect.forkScoped)
      yield* count(yield* subscriber.subscribeScoped("restart/2", { qos: 2 }), qos2).pipe(Effect.forkScoped)
      yield* Effect.all([
        publishAll(publisher, "restart/1", TOTAL, 1),
        publishAll(publisher, "restart/2", TOTAL, 2)
      ], { concurrency: 2 })
      yield* Deferred.await(qos1.complete)
      yield* Deferred.await(qos2.complete)
      yield* report("broker SIGKILL + restart", {
        messagesPerQos: TOTAL,
        killedAfter: KILL_AT,
        qos1Received: qos1.distinct,
        qos1Lost: TOTAL - qos1.distinct,
        qos1Duplicates: qos1.duplicates,
        qos2Received: qos2.distinct,
        qos2Duplicates: qos2.duplicates,
        publisherConnections: (yield* publisher.stats).connections,
        subscriberConnections: (yield* subscriber.stats).connections
      })
      expect(killed).toBe(true)
      expect(qos1.distinct).toBe(TOTAL)
      expect(qos2.distinct).toBe(TOTAL)
      expect(qos2.duplicates).toBe(0)
      expect((yield* publisher.stats).connections).toBeGreaterThanOrEqual(2)
    }).pipe(Effect.scoped, Effect.timeout("100 seconds")), 110_000)
})
