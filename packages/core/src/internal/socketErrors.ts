/**
 * What a transport failure means to the client: `Socket.SocketError` in,
 * a typed connection error with a readable reason out.
 */
import type * as Socket from "effect/socket/Socket"
import { ConnectionLost } from "../MqttError.ts"

const describe = (cause: unknown): string => cause instanceof Error ? cause.message : String(cause)

/** A readable reason for a socket failure (the password is never part of a socket error). */
export const socketErrorReason = (error: Socket.SocketError): string => {
  const reason = error.reason
  switch (reason._tag) {
    case "SocketOpenError":
      return `cannot open the connection (${reason.kind}): ${describe(reason.cause)}`
    case "SocketCloseError":
      return `the broker closed the connection (code ${reason.code})`
    case "SocketReadError":
      return `read failed: ${describe(reason.cause)}`
    case "SocketWriteError":
      return `write failed: ${describe(reason.cause)}`
    default:
      return error.message
  }
}

/** The connection error a socket failure becomes. */
export const toConnectionError = (error: Socket.SocketError): ConnectionLost =>
  new ConnectionLost({ reason: socketErrorReason(error), cause: error })
