/**
 * Routes incoming PUBLISH packets to the subscription streams whose filters
 * match (overlapping subscriptions each get every matching message), through
 * each subscription's bounded buffer.
 *
 * Back-pressure: a QoS 1/2 message is acknowledged (PUBACK/PUBREC) only once
 * it is in the buffer of every subscription it matched. With strategy
 * "suspend" a message that finds a buffer full waits in that subscription's
 * `pending` list and its acknowledgement waits with it, so a slow consumer
 * slows the broker down through the broker's inflight window instead of
 * growing our memory, while the socket keeps being read (acknowledgements of
 * our own publishes are never held up). QoS 0 has no acknowledgement to hold
 * back: beyond the buffer it is dropped per strategy and counted.
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Latch from "effect/Latch"
import * as Queue from "effect/Queue"
import type { MqttError } from "../MqttError.ts"
import type { MqttMessage, QoS } from "../MqttMessage.ts"
import type { Strategy } from "../MqttOptions.ts"
import { matches } from "../Topic.ts"
import type { Packet, PublishPacket, SubscribePacket } from "./codec.ts"

/**
 * The acknowledgement of one incoming QoS 1/2 message, sent when `remaining`
 * reaches 0. Tickets and pending entries are classes, not object literals:
 * they live as long as a message waits for room, which is what makes V8
 * pretenure a literal's allocation site (see `DecodedPublish` in codec.ts).
 */
export class AckTicket {
  /** Subscription buffers the message still has to enter (plus one while it is being routed). */
  remaining = 1
  readonly ack: Packet
  /** The connection it arrived on: an acknowledgement is never sent on a later connection. */
  readonly connection: number
  constructor(ack: Packet, connection: number) {
    this.ack = ack
    this.connection = connection
  }
}

class Pending {
  readonly message: MqttMessage
  readonly ticket: AckTicket | undefined
  constructor(message: MqttMessage, ticket: AckTicket | undefined) {
    this.message = message
    this.ticket = ticket
  }
}

export interface Subscription {
  readonly filters: ReadonlyArray<string>
  readonly qos: QoS
  /** MQTT 5 subscription options. */
  readonly noLocal: boolean | undefined
  readonly retainAsPublished: boolean | undefined
  readonly retainHandling: 0 | 1 | 2 | undefined
  /** MQTT 5 subscription identifier, unique in this client. */
  readonly id: number | undefined
  /** The SUBSCRIBE carried `id` (the broker supports identifiers): messages are routed by it. */
  idSent: boolean
  readonly strategy: Strategy
  readonly bufferSize: number
  /** The buffer the stream reads. Bounded; "dropping"/"sliding" are applied by `offer` so drops are counted. */
  readonly messages: Queue.Queue<MqttMessage, MqttError | Cause.Done>
  /** Messages waiting for room in `messages` (strategy "suspend"), oldest first. */
  readonly pending: Array<Pending>
  /** QoS 0 messages in `pending`: at most `bufferSize`, beyond that they are dropped. */
  pendingQos0: number
  readonly wakePump: Latch.Latch
  /** SUBACK accepted it: it is re-subscribed after a reconnect without a session. */
  confirmed: boolean
}

export const makeSubscription = (options: {
  readonly filters: ReadonlyArray<string>
  readonly qos: QoS
  readonly strategy: Strategy
  readonly bufferSize: number
  readonly noLocal: boolean | undefined
  readonly retainAsPublished: boolean | undefined
  readonly retainHandling: 0 | 1 | 2 | undefined
  readonly id: number | undefined
}): Effect.Effect<Subscription> =>
  Effect.map(
    Queue.make<MqttMessage, MqttError | Cause.Done>({
      capacity: options.bufferSize,
      // The queue slides by itself (without handing back the evicted message); drops are counted in `offer`.
      strategy: options.strategy === "sliding" ? "sliding" : "suspend"
    }),
    (messages) => ({
    ...options,
    idSent: false,
    messages,
    pending: [],
    pendingQos0: 0,
    wakePump: Latch.makeUnsafe(false),
    confirmed: false
  })
  )

export class Router {
  private readonly subscriptions = new Set<Subscription>()
  /** Incoming messages dropped by a subscription's strategy. */
  dropped = 0

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

  /**
   * Offers the message to every matching subscription; `ticket.remaining`
   * counts those that must wait. With MQTT 5 subscription identifiers the
   * broker names the matching subscriptions; the others match by filter.
   */
  deliver(packet: PublishPacket, ticket: AckTicket | undefined): void {
    let message: MqttMessage | undefined
    const ids = packet.properties?.subscriptionIdentifier
    for (const subscription of this.subscriptions) {
      // A broker that supports identifiers names every matching subscription that has one.
      if (subscription.idSent && ids !== undefined) {
        if (!(typeof ids === "number" ? ids === subscription.id : ids.includes(subscription.id!))) continue
        message ??= toMessage(packet)
        this.offer(subscription, message, ticket)
        continue
      }
      for (let i = 0; i < subscription.filters.length; i++) {
        if (matches(subscription.filters[i], packet.topic)) {
          message ??= toMessage(packet)
          this.offer(subscription, message, ticket)
          break
        }
      }
    }
  }

  private offer(subscription: Subscription, message: MqttMessage, ticket: AckTicket | undefined): void {
    if (subscription.strategy === "sliding") {
      if (Queue.isFullUnsafe(subscription.messages)) this.dropped++ // the oldest makes room
      Queue.offerUnsafe(subscription.messages, message)
      return
    }
    // Behind waiting messages a new one waits too, so the order is kept.
    if (subscription.pending.length === 0 && Queue.offerUnsafe(subscription.messages, message)) return
    switch (subscription.strategy) {
      case "dropping":
        this.dropped++
        return
      case "suspend":
        if (ticket === undefined) {
          if (subscription.pendingQos0 >= subscription.bufferSize) {
            this.dropped++
            return
          }
          subscription.pendingQos0++
        } else {
          ticket.remaining++
        }
        subscription.pending.push(new Pending(message, ticket))
        subscription.wakePump.openUnsafe()
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

/**
 * Moves a subscription's waiting messages into its buffer as the consumer
 * makes room, settling each one's acknowledgement ticket. Runs for the
 * lifetime of the subscription.
 */
export const pump = (subscription: Subscription, settle: (ticket: AckTicket) => void): Effect.Effect<void> =>
  Effect.gen(function*() {
    while (true) {
      yield* subscription.wakePump.await
      subscription.wakePump.closeUnsafe()
      while (subscription.pending.length > 0) {
        const { message, ticket } = subscription.pending[0]
        const offered = yield* Queue.offer(subscription.messages, message)
        if (!offered) return // the stream has ended
        subscription.pending.shift()
        if (ticket === undefined) subscription.pendingQos0--
        else settle(ticket)
      }
    }
  })

/** The SUBSCRIBE for a subscription (its identifier is added when sent, if the broker supports them). */
export const subscribePacket = (subscription: Subscription): SubscribePacket => ({
  cmd: "subscribe",
  subscriptions: subscription.filters.map((topic) => ({
    topic,
    qos: subscription.qos,
    ...(subscription.noLocal !== undefined ? { nl: subscription.noLocal } : {}),
    ...(subscription.retainAsPublished !== undefined ? { rap: subscription.retainAsPublished } : {}),
    ...(subscription.retainHandling !== undefined ? { rh: subscription.retainHandling } : {})
  }))
})

const toMessage = (packet: PublishPacket): MqttMessage =>
  new ReceivedMessage(packet.topic, packet.payload as Uint8Array, packet.qos, packet.retain, packet.dup, packet.properties)

/** A delivered message. A class, not an object literal: see `DecodedPublish` in codec.ts (V8 pretenuring). */
class ReceivedMessage implements MqttMessage {
  readonly topic: string
  readonly payload: Uint8Array
  readonly qos: QoS
  readonly retain: boolean
  readonly dup: boolean
  readonly properties: PublishPacket["properties"]
  constructor(topic: string, payload: Uint8Array, qos: QoS, retain: boolean, dup: boolean, properties: PublishPacket["properties"]) {
    this.topic = topic
    this.payload = payload
    this.qos = qos
    this.retain = retain
    this.dup = dup
    this.properties = properties
  }
}
