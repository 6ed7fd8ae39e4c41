/**
 * One accepted publish. The same object is the caller's receipt, so a
 * publish allocates no more than it must: the request, its encoded bytes and
 * the packet. The `Deferred` behind `acknowledged` is made only when someone
 * asks before the outcome is known (most QoS 0 receipts are never awaited).
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { NodeInspectSymbol } from "effect/Inspectable"
import type { PublishReceipt } from "../MqttClient.ts"
import type { MqttError } from "../MqttError.ts"
import type { QoS } from "../MqttMessage.ts"
import type { PublishPacket } from "./codec.ts"

/**
 * A publish accepted into the queue, already encoded by the caller's fiber
 * (so bad input fails before it is queued, and the event loop only copies
 * bytes). QoS 1/2 get their packet id patched into `bytes` when sent.
 */
export class PublishRequest implements PublishReceipt {
  readonly topic: string
  readonly qos: QoS
  readonly bytes: Uint8Array
  /** The packet `bytes` encode (kept to re-encode with a topic alias). */
  readonly packet: PublishPacket
  /** Clock time it was queued (only set when `messageExpiry` is on). */
  readonly enqueuedAt: number
  messageId = 0
  private outcome: Effect.Effect<void, MqttError> | undefined = undefined
  private waiting: Deferred.Deferred<void, MqttError> | undefined = undefined

  constructor(topic: string, qos: QoS, bytes: Uint8Array, packet: PublishPacket, enqueuedAt: number) {
    this.topic = topic
    this.qos = qos
    this.bytes = bytes
    this.packet = packet
    this.enqueuedAt = enqueuedAt
  }

  /** The receipt: see `PublishReceipt.acknowledged`. */
  get acknowledged(): Effect.Effect<void, MqttError> {
    if (this.outcome !== undefined) return this.outcome
    this.waiting ??= Deferred.makeUnsafe<void, MqttError>()
    return Deferred.await(this.waiting)
  }

  /**
   * Records success (acknowledged or, at QoS 0, written) without resuming
   * anyone yet; returns whether someone waits, who must then get `notify()`.
   * The connection records every receipt a socket read settles before it
   * resumes any waiter: a publisher that waits on its oldest receipt then
   * finds the following ones already settled and publishes on, once per read
   * instead of once per acknowledgement.
   */
  succeedQuietly(): boolean {
    return this.record(Exit.void)
  }

  /** Like `succeedQuietly`, for a failure. */
  failQuietly(error: MqttError): boolean {
    return this.record(Exit.fail(error))
  }

  /** Resumes whoever waits on the outcome recorded by `succeedQuietly`/`failQuietly`. */
  notify(): void {
    if (this.waiting !== undefined && this.outcome !== undefined) Deferred.doneUnsafe(this.waiting, this.outcome)
  }

  fail(error: MqttError): void {
    if (this.failQuietly(error)) this.notify()
  }

  /**
   * Failed, with the error made only when someone looks at the receipt. For
   * drops: a flood can drop tens of thousands of messages a second whose
   * receipts nobody reads, and an error object (with its stack) each is
   * most of the cost of dropping.
   */
  failLazily(makeError: () => MqttError): void {
    if (this.record(Effect.suspend(() => Effect.fail(makeError())))) this.notify()
  }

  /** Only the first outcome counts. Returns whether someone waits on it. */
  private record(outcome: Effect.Effect<void, MqttError>): boolean {
    if (this.outcome !== undefined) return false
    this.outcome = outcome
    return this.waiting !== undefined
  }

  toJSON(): unknown {
    return { _id: "PublishReceipt", topic: this.topic, qos: this.qos }
  }

  [NodeInspectSymbol](): unknown {
    return this.toJSON()
  }
}
