/**
 * The effect `publish` and `tryPublish` return: one object per call, which
 * enqueues the message each time it runs.
 *
 * Why not `Effect.suspend(() => enqueue(message))`: a `yield*` of an ordinary
 * effect goes through Effect's `SingleShotGen`, which answers with a fresh
 * `{ value, done }` object literal. V8 may decide that this allocation site is
 * long-lived and from then on allocate every such result in the old generation
 * (allocation-site pretenuring); each result then keeps the effect it carries,
 * and what the effect captured (the caller's message), alive until the next
 * full GC, and at 100,000 publishes a second V8 grows the young generation to
 * 4 times its size (the workload-6 publisher: 264 MiB instead of 115 in a
 * third of the runs; 0 of 10 with `SingleShotGen` patched to return a class
 * instance). So this effect is its own iterator's result (nothing to
 * pretenure), and it copies the message's fields when `publish` is called, so
 * the caller's message object dies young too (else V8 may pretenure the
 * caller's `{ topic, payload }` literal instead: 2 runs of 10 at 160 MiB).
 */
import type * as Effect from "effect/Effect"
import * as Effectable from "effect/Effectable"
import type { PublishMessage } from "../MqttMessage.ts"

/** What a full queue does: apply the strategy (`publish`) or fail with `QueueFull` (`tryPublish`). */
export type WhenFull = "strategy" | "fail"

export class PublishEffect<A, E> extends Effectable.Class<A, E> implements PublishMessage {
  readonly topic: string
  readonly payload: string | Uint8Array
  readonly qos: PublishMessage["qos"]
  readonly retain: PublishMessage["retain"]
  readonly properties: PublishMessage["properties"]
  /** Whether the caller passed an object; if not, `notAMessage` is what it passed, and the effect fails with it. */
  private readonly isMessage: boolean
  private readonly notAMessage: unknown
  private readonly whenFull: WhenFull
  private readonly enqueue: (message: PublishMessage, whenFull: WhenFull) => Effect.Effect<A, E>

  constructor(
    enqueue: (message: PublishMessage, whenFull: WhenFull) => Effect.Effect<A, E>,
    message: PublishMessage,
    whenFull: WhenFull
  ) {
    super()
    this.enqueue = enqueue
    this.whenFull = whenFull
    // The message is read now and not kept, so the caller's message object is garbage as soon as `publish`
    // returns, whenever the effect runs (an object V8 sees surviving is one it may pretenure, see above).
    const isObject = typeof message === "object" && message !== null
    this.isMessage = isObject
    this.notAMessage = isObject ? undefined : message
    this.topic = isObject ? message.topic : ""
    this.payload = isObject ? message.payload : ""
    this.qos = isObject ? message.qos : undefined
    this.retain = isObject ? message.retain : undefined
    this.properties = isObject ? message.properties : undefined
  }

  /** Runs each time the effect runs: nothing happens before. */
  asEffect(): Effect.Effect<A, E> {
    return this.enqueue(this.isMessage ? this : this.notAMessage as PublishMessage, this.whenFull)
  }

  override [Symbol.iterator](): Effect.EffectIterator<Effect.Effect<A, E>> {
    return new YieldOnce(this) as unknown as Effect.EffectIterator<Effect.Effect<A, E>>
  }
}

/**
 * The iterator behind one `yield*`: yields the effect, then completes with the
 * value the fiber sends back. It is its own `IteratorResult` (the caller reads
 * `done` and `value` before calling `next` again).
 */
class YieldOnce {
  value: unknown
  done = false
  private started = false

  constructor(effect: unknown) {
    this.value = effect
  }

  next(result: unknown): this {
    if (this.started) {
      this.done = true
      this.value = result
    } else {
      this.started = true
    }
    return this
  }
}
