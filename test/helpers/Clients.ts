/**
 * Our client over real TCP, for integration tests: a plain one, and one whose
 * connection the test can cut abruptly (no DISCONNECT), as a crashing process would.
 */
import * as Net from "node:net"
import * as NodeSocket from "@effect/platform-node/NodeSocket"
import { MqttClient, type MqttOptions } from "@effect-mqtt/core"
import { NodeMqttClient } from "@effect-mqtt/node"
import { Effect, Schedule } from "effect"
import * as Socket from "effect/socket/Socket"

/** A client connected to `url` in the current scope. */
export const connect = (url: string | ReadonlyArray<string>, options: MqttOptions.MqttClientOptions = {}) =>
  NodeMqttClient.make({ url, ...options })

/** A client plus `abort`, which destroys its TCP connection without DISCONNECT. */
export const connectAbortable = (port: number, options: MqttOptions.MqttClientOptions = {}) =>
  Effect.gen(function*() {
    let current: Net.Socket | undefined
    const socket = yield* NodeSocket.fromDuplex(
      Effect.callback<Net.Socket, Socket.SocketError>((resume) => {
        const conn = Net.createConnection({ host: "127.0.0.1", port })
        conn.once("connect", () => {
          current = conn
          resume(Effect.succeed(conn))
        })
        conn.once("error", (cause) =>
          resume(Effect.fail(new Socket.SocketError({ reason: new Socket.SocketOpenError({ kind: "Unknown", cause }) }))))
      })
    )
    const client = yield* MqttClient.make(options).pipe(Effect.provideService(Socket.Socket, socket))
    return { client, abort: Effect.sync(() => current?.destroy()) }
  })

/** Waits (polling every 10 ms) until the client is connected. */
export const awaitConnected = (client: MqttClient.Service) =>
  client.stats.pipe(Effect.repeat({ until: (stats) => stats.connected, schedule: Schedule.spaced("10 millis") }))

/** Waits (polling every 10 ms) until the client noticed it is disconnected. */
export const awaitDisconnected = (client: MqttClient.Service) =>
  client.stats.pipe(Effect.repeat({ until: (stats) => !stats.connected, schedule: Schedule.spaced("10 millis") }))
