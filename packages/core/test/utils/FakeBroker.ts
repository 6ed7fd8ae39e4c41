/**
 * An in-memory broker behind a `Socket.Socket`, for deterministic tests of the
 * client without I/O. It answers CONNECT, SUBSCRIBE, PUBLISH (QoS 1/2) and
 * PINGREQ like a broker would, unless told to stay silent; tests can gate
 * connections, inject raw bytes, and drop the connection.
 */
import { Cause, Effect, Latch, Queue, Scope } from "effect"
import * as Socket from "effect/socket/Socket"
import * as MqttPacket from "mqtt-packet"

export interface FakeBrokerOptions {
  readonly protocolVersion?: 4 | 5
  /** Answer PINGREQ with PINGRESP (default true). */
  readonly answerPings?: boolean
  /** Answer QoS 1/2 publishes (default true). */
  readonly acknowledge?: boolean
  /** CONNACK return/reason code (default 0). */
  readonly connackCode?: number
  /** SUBACK code for every filter (default: the requested QoS). */
  readonly subackCode?: number | undefined
  /** CONNACK session-present flag (default false). */
  readonly sessionPresent?: boolean | undefined
  /** v5 CONNACK properties, e.g. `{ receiveMaximum: 2 }`. */
  readonly connackProperties?: Record<string, unknown> | undefined
  /** Handles a packet from the client before the default behaviour; return true to skip the default. */
  readonly script?: ((packet: MqttPacket.Packet, broker: Pick<FakeBroker, "send" | "sendRaw" | "drop">) => boolean) | undefined
}

export interface FakeBroker {
  readonly socket: Socket.Socket
  /** Connections are accepted only while the gate is open. */
  readonly gate: Latch.Latch
  /** Every packet the client wrote, in order, across connections. */
  readonly received: Array<MqttPacket.Packet>
  /** Number of writeAll/write calls made by the client (one per batch). */
  readonly writes: { count: number }
  readonly connections: { count: number }
  /** Sends a packet to the client on the current connection. */
  readonly send: (packet: MqttPacket.Packet) => void
  /** Sends raw bytes to the client on the current connection. */
  readonly sendRaw: (bytes: Uint8Array) => void
  /** Closes the current connection as if the network failed. */
  readonly drop: () => void
  /** Mutable, so a test can change the broker's behaviour between connections. */
  readonly options: { -readonly [K in keyof FakeBrokerOptions]-?: FakeBrokerOptions[K] }
}

export const make = (input: FakeBrokerOptions = {}): Effect.Effect<FakeBroker> =>
  Effect.sync(() => {
    const options = {
      subackCode: input.subackCode,
      sessionPresent: input.sessionPresent ?? false,
      connackProperties: input.connackProperties,
      script: input.script,
      protocolVersion: input.protocolVersion ?? 4,
      answerPings: input.answerPings ?? true,
      acknowledge: input.acknowledge ?? true,
      connackCode: input.connackCode ?? 0
    }
    const gate = Latch.makeUnsafe(true)
    const received: Array<MqttPacket.Packet> = []
    const writes = { count: 0 }
    const connections = { count: 0 }
    let inbound: Queue.Queue<Uint8Array, Socket.SocketError> | undefined
    let parser: MqttPacket.Parser | undefined

    const sendRaw = (bytes: Uint8Array) => {
      if (inbound !== undefined) Queue.offerUnsafe(inbound, bytes)
    }
    const send = (packet: MqttPacket.Packet) => sendRaw(MqttPacket.generate(packet, { protocolVersion: options.protocolVersion }))
    const drop = () => {
      if (inbound === undefined) return
      Queue.failCauseUnsafe(
        inbound,
        Cause.fail(new Socket.SocketError({ reason: new Socket.SocketCloseError({ code: 1006 }) }))
      )
      inbound = undefined
      parser = undefined
    }

    const respond = (packet: MqttPacket.Packet) => {
      received.push(packet)
      if (options.script?.(packet, { send, sendRaw, drop }) === true) return
      switch (packet.cmd) {
        case "connect":
          send(
            options.protocolVersion === 5
              ? {
                cmd: "connack",
                reasonCode: options.connackCode,
                sessionPresent: options.sessionPresent,
                ...(options.connackProperties !== undefined ? { properties: options.connackProperties } : {})
              }
              : { cmd: "connack", returnCode: options.connackCode, sessionPresent: options.sessionPresent }
          )
          break
        case "subscribe":
          send({ cmd: "suback", messageId: packet.messageId!, granted: packet.subscriptions.map((s) => options.subackCode ?? s.qos) })
          break
        case "unsubscribe":
          send({ cmd: "unsuback", messageId: packet.messageId!, granted: [] })
          break
        case "publish":
          if (!options.acknowledge) break
          if (packet.qos === 1) send({ cmd: "puback", messageId: packet.messageId! })
          if (packet.qos === 2) send({ cmd: "pubrec", messageId: packet.messageId! })
          break
        case "pubrel":
          if (options.acknowledge) send({ cmd: "pubcomp", messageId: packet.messageId! })
          break
        case "pingreq":
          if (options.answerPings) send({ cmd: "pingresp" })
          break
      }
    }

    const reader: Socket.Socket["reader"] = Effect.gen(function*() {
      yield* gate.await
      const queue = yield* Queue.unbounded<Uint8Array, Socket.SocketError>()
      inbound = queue
      connections.count++
      const p = MqttPacket.parser({ protocolVersion: options.protocolVersion })
      p.on("packet", respond)
      parser = p
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          if (inbound === queue) {
            inbound = undefined
            parser = undefined
          }
          Queue.failCauseUnsafe(
            queue,
            Cause.fail(new Socket.SocketError({ reason: new Socket.SocketCloseError({ code: 1006 }) }))
          )
        })
      )
      return {
        pull: Queue.takeAll(queue) as Effect.Effect<[Uint8Array, ...Array<Uint8Array>], Socket.SocketError>,
        upgrade: () => Effect.void
      }
    })

    const writeChunk = (chunk: Uint8Array | string) => {
      parser?.parse(Buffer.from(chunk))
    }
    const writer: Socket.Socket["writer"] = Effect.succeed({
      write: (chunk) =>
        Effect.sync(() => {
          writes.count++
          if (!Socket.isCloseEvent(chunk)) writeChunk(chunk)
        }),
      writeAll: (chunks) =>
        Effect.sync(() => {
          writes.count++
          for (const chunk of chunks) writeChunk(chunk)
        })
    })

    return {
      socket: Socket.make({ reader, writer }),
      gate,
      received,
      writes,
      connections,
      send,
      sendRaw,
      drop,
      options
    }
  })

export type { Scope }
