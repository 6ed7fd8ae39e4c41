/**
 * Fault tests 1 and 2: the link to mosquitto is cut (both ways, in the middle
 * of a packet) every 300-700 delivered messages while 10,000 messages flow.
 * Persistent sessions on the subscriber (and, for QoS 2, the publisher).
 */
import { describe, expect, it } from "@effect/vitest"
import { FaultProxy } from "@effect-mqtt/node"
import { Deferred, Effect } from "effect"
import { connect } from "../helpers/Clients.ts"
import { Mosquitto, requireBroker } from "../helpers/index.ts"
import { count, fastReconnect, makeTally, publishAll, random, report } from "./shared.ts"

const TOTAL = 10_000

const cutEvery300To700 = (qos: 1 | 2, seed: number) =>
  Effect.gen(function*() {
    const broker = yield* Mosquitto.start({ config: "max_queued_messages 0" }).pipe(requireBroker)
    const proxy = yield* FaultProxy.start({ host: broker.host, port: broker.port })
    const rng = random(seed)
    const subscriber = yield* connect(proxy.url, {
      clientId: `cuts-sub-${qos}`,
      cleanSession: false,
      reconnect: fastReconnect
    })
    const publisher = yield* connect(proxy.url, {
      clientId: `cuts-pub-${qos}`,
      // exactly once needs the publisher's session too: a PUBREL must go to the broker that saw the PUBLISH
      cleanSession: qos === 1,
      reconnect: fastReconnect
    })
    const topic = `faults/cuts/${qos}`
    const messages = yield* subscriber.subscribeScoped(topic, { qos })
    const tally = makeTally(TOTAL)
    let cuts = 0
    let nextCut = rng.between(300, 700)
    yield* count(messages, tally, (distinct) => {
      if (distinct < nextCut) return Effect.void
      nextCut += rng.between(300, 700)
      cuts++
      return proxy.cut({ atRandomByte: true })
    }).pipe(Effect.forkScoped)
    yield* publishAll(publisher, topic, TOTAL, qos)
    yield* Deferred.await(tally.complete)
    const stats = { pub: yield* publisher.stats, sub: yield* subscriber.stats }
    yield* report(`cuts qos ${qos}`, {
      seed,
      messages: TOTAL,
      cuts,
      received: tally.distinct,
      lost: TOTAL - tally.distinct,
      duplicates: tally.duplicates,
      publisherConnections: stats.pub.connections,
      subscriberConnections: stats.sub.connections
    })
    expect(tally.distinct).toBe(TOTAL)
    expect(cuts).toBeGreaterThanOrEqual(14)
    expect(stats.pub.connections).toBeGreaterThan(10)
    return tally
  }).pipe(Effect.scoped, Effect.timeout("120 seconds"))

describe("link cut every 300-700 messages", () => {
  it.live("QoS 1: all 10,000 messages arrive (duplicates allowed and counted)", () =>
    Effect.gen(function*() {
      yield* cutEvery300To700(1, 1)
    }), 130_000)

  it.live("QoS 2: every message arrives exactly once", () =>
    Effect.gen(function*() {
      const tally = yield* cutEvery300To700(2, 2)
      expect(tally.duplicates).toBe(0)
    }), 130_000)
})
