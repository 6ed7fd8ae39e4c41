/**
 * Routes incoming PUBLISH packets to the subscription streams whose filters
 * match. Overlapping subscriptions each get every matching message.
 */
import { Cause, Queue } from "effect"
import type { MqttError } from "../MqttError.ts"
import type { MqttMessage, QoS } from "../MqttMessage.ts"
import { matches } from "../Topic.ts"
import type { PublishPacket } from "./codec.ts"

export interface Subscription {
  readonly filters: ReadonlyArray<string>
  readonly qos: QoS
  readonly messages: Queue.Queue<MqttMessage, MqttError | Cause.Done>
  /** SUBACK accepted it: it is re-subscribed after a reconnect without a session. */
  confirmed: boolean
}

export class Router {
  private readonly subscriptions = new Set<Subscription>()

  add(subscription: Subscription): void {
    this.subscriptions.add(subscription)
  }

  remove(subscription: Subscription): void {
    this.subscriptions.delete(subscription)
  }

  /** Whether any active subscription still uses `filter`. */
  uses(filter: string): boolean {
    for (const subscription of this.subscriptions) {
      if (subscription.filters.includes(filter)) return true
    }
    return false
  }

  confirmed(): Array<Subscription> {
    return Array.from(this.subscriptions).filter((subscription) => subscription.confirmed)
  }

  deliver(packet: PublishPacket): void {
    let message: MqttMessage | undefined
    for (const subscription of this.subscriptions) {
      for (let i = 0; i < subscription.filters.length; i++) {
        if (matches(subscription.filters[i], packet.topic)) {
          message ??= toMessage(packet)
          Queue.offerUnsafe(subscription.messages, message)
          break
        }
      }
    }
  }

  /** Ends every subscription stream: with success when the client closes, or with `error`. */
  endAll(error: MqttError): void {
    for (const subscription of this.subscriptions) {
      if (error._tag === "ClientClosed") Queue.endUnsafe(subscription.messages)
      else Queue.failCauseUnsafe(subscription.messages, Cause.fail(error))
    }
    this.subscriptions.clear()
  }
}

const toMessage = (packet: PublishPacket): MqttMessage => ({
  topic: packet.topic,
  payload: packet.payload as Uint8Array,
  qos: packet.qos,
  retain: packet.retain,
  dup: packet.dup,
  properties: packet.properties
})
