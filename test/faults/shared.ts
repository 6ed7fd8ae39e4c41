/**
 * Shared pieces of the fault tests: a fast reconnection schedule, a seeded
 * random source, and a subscriber that counts what it receives per message id.
 */
import { MqttMessage, type MqttClient } from "@effect-mqtt/core"
import { Deferred, Duration, Effect, Schedule, Stream } from "effect"

/** Reconnect quickly (10 ms doubling, capped at 200 ms): the tests cut links often. */
export const fastReconnect = Schedule.exponential("10 millis").pipe(
  Schedule.modifyDelay(({ duration }) => Effect.succeed(Duration.min(duration, Duration.millis(200))))
)

/** A deterministic PRNG (mulberry32), so a failing run can be replayed with its seed. */
export const random = (seed: number) => {
  let a = seed >>> 0
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  return { next, between: (min: number, max: number) => min + Math.floor(next() * (max - min + 1)) }
}

export interface Tally {
  readonly total: number
  /** Times each id was received. */
  readonly counts: Uint32Array
  distinct: number
  duplicates: number
  /** Ids in the order they arrived (first arrival only). */
  readonly order: Array<number>
  /** Completes when every id 0..total-1 was received at least once. */
  readonly complete: Deferred.Deferred<void>
}

export const makeTally = (total: number): Tally => ({
  total,
  counts: new Uint32Array(total),
  distinct: 0,
  duplicates: 0,
  order: [],
  complete: Deferred.makeUnsafe()
})

/** Counts the messages of `messages` (payload = the message id) into `tally`; `onNew` runs after each new id. */
export const count = (
  messages: Stream.Stream<MqttMessage.MqttMessage, unknown>,
  tally: Tally,
  onNew: (distinct: number) => Effect.Effect<void> = () => Effect.void
) =>
  messages.pipe(
    Stream.runForEach((message) => {
      const id = Number(MqttMessage.text(message))
      if (tally.counts[id]++ > 0) {
        tally.duplicates++
        return Effect.void
      }
      tally.distinct++
      tally.order.push(id)
      if (tally.distinct === tally.total) Deferred.doneUnsafe(tally.complete, Effect.void)
      return onNew(tally.distinct)
    })
  )

/** Publishes ids 0..total-1 and waits for every receipt. */
export const publishAll = (client: MqttClient.Service, topic: string, total: number, qos: 1 | 2) =>
  Effect.gen(function*() {
    const receipts: Array<MqttClient.PublishReceipt> = []
    for (let i = 0; i < total; i++) receipts.push(yield* client.publish({ topic, payload: String(i), qos }))
    for (const receipt of receipts) yield* receipt.acknowledged
  })

export const report = (name: string, fields: Record<string, unknown>) =>
  Effect.sync(() => console.log(`[fault] ${name}: ${JSON.stringify(fields)}`))
