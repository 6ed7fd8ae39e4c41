/**
 * MQTT 5 request/response on top of publish and subscribe: one response
 * topic per client (subscribed on first use, for the client's lifetime), and
 * requests matched to responses by random Correlation Data.
 */
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type * as MqttClient from "../MqttClient.ts"
import { InvalidOptions, type MqttError, RequestTimeout } from "../MqttError.ts"
import type { MqttMessage, PublishMessage } from "../MqttMessage.ts"

export interface RequesterDeps {
  readonly version: 4 | 5
  /** The client's scope: the response subscription lives as long as the client. */
  readonly scope: Scope.Scope
  readonly clientId: () => string
  /** The broker's Response Information (a topic prefix it grants), if any. */
  readonly responseInformation: () => string | undefined
  readonly publish: MqttClient.Service["publish"]
  readonly subscribeScoped: MqttClient.Service["subscribeScoped"]
}

const hex = (bytes: Uint8Array | undefined): string | undefined => {
  if (bytes === undefined) return undefined
  let out = ""
  for (const b of bytes) out += b.toString(16).padStart(2, "0")
  return out
}

const needsV5 = () => new InvalidOptions({ reason: "request/response needs protocolVersion 5" })

export const makeRequester = (deps: RequesterDeps) => {
  const waiting = new Map<string, Deferred.Deferred<MqttMessage>>()
  /** Resolves with the response topic once its subscription is active. */
  let responseTopic: Deferred.Deferred<string, MqttError> | undefined

  const listen = (ready: Deferred.Deferred<string, MqttError>) =>
    Effect.gen(function*() {
      const topic = `${deps.responseInformation() ?? "effect-mqtt/responses"}/${deps.clientId()}`
      const responses = yield* deps.subscribeScoped(topic, { qos: 1 })
      Deferred.doneUnsafe(ready, Effect.succeed(topic))
      yield* Stream.runForEach(responses, (message) =>
        Effect.sync(() => {
          const key = hex(message.properties?.correlationData)
          const waiter = key === undefined ? undefined : waiting.get(key)
          if (waiter !== undefined) Deferred.doneUnsafe(waiter, Effect.succeed(message))
        }))
    }).pipe(
      Effect.scoped,
      Effect.catch((error: MqttError) =>
        Effect.sync(() => {
          Deferred.doneUnsafe(ready, Effect.fail(error))
          if (responseTopic === ready) responseTopic = undefined // the next request tries again
        })
      )
    )

  const awaitResponseTopic = Effect.suspend(() => {
    if (responseTopic !== undefined) return Deferred.await(responseTopic)
    const ready = Deferred.makeUnsafe<string, MqttError>()
    responseTopic = ready
    return Effect.forkIn(listen(ready), deps.scope).pipe(Effect.andThen(Deferred.await(ready)))
  })

  const request = (message: MqttClient.RequestMessage): Effect.Effect<MqttMessage, MqttError> =>
    Effect.gen(function*() {
      if (deps.version !== 5) return yield* needsV5()
      const topic = yield* awaitResponseTopic
      const correlationData = new Uint8Array(16)
      globalThis.crypto.getRandomValues(correlationData)
      const key = hex(correlationData)!
      const response = Deferred.makeUnsafe<MqttMessage>()
      waiting.set(key, response)
      const timeout = Duration.fromInputUnsafe(message.timeout ?? "10 seconds")
      return yield* deps.publish({
        topic: message.topic,
        payload: message.payload,
        qos: message.qos ?? 1,
        properties: { ...message.properties, responseTopic: topic, correlationData }
      }).pipe(
        Effect.andThen(Deferred.await(response)),
        Effect.timeoutOrElse({
          duration: timeout,
          orElse: () => Effect.fail(new RequestTimeout({ topic: message.topic, timeoutMillis: Duration.toMillis(timeout) }))
        }),
        Effect.ensuring(Effect.sync(() => waiting.delete(key)))
      )
    })

  const reply = (request: MqttMessage, response: Omit<PublishMessage, "topic">) =>
    Effect.suspend(() => {
      const responseTopic = request.properties?.responseTopic
      if (deps.version !== 5) return Effect.fail(needsV5())
      if (responseTopic === undefined) {
        return Effect.fail(new InvalidOptions({ reason: `the message on "${request.topic}" has no response topic` }))
      }
      const correlationData = request.properties?.correlationData
      return deps.publish({
        ...response,
        topic: responseTopic,
        properties: { ...response.properties, ...(correlationData !== undefined ? { correlationData } : {}) }
      })
    })

  return { request, reply }
}
