/**
 * What a transport failure means to the client: `Socket.SocketError` in,
 * a typed connection error with a readable reason out. TLS failures (the
 * broker's certificate did not verify, the broker refused ours, the port does
 * not speak TLS) become `TlsError` saying why; everything else `ConnectionLost`.
 *
 * The core stays transport-free: TLS failures are recognised by the error
 * codes Node.js (and OpenSSL) put on the errors, found anywhere in the cause
 * chain (`cause`, a WebSocket error event's `error`, an `AggregateError`'s
 * `errors`).
 */
import type * as Socket from "effect/socket/Socket"
import { ConnectionLost, type TlsFailure, TlsError } from "../MqttError.ts"

const isObject = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null

/** The most useful message in `cause`: an Error's, a WebSocket error event's error's, or its string form. */
const describe = (cause: unknown): string => {
  if (cause instanceof Error) return cause.message
  if (isObject(cause)) {
    if (cause.error instanceof Error) return cause.error.message
    if (typeof cause.message === "string" && cause.message !== "") return cause.message
    if (typeof cause.type === "string") return `${cause.type} event`
  }
  return String(cause)
}

/** A readable reason for a socket failure (the password is never part of a socket error). */
export const socketErrorReason = (error: Socket.SocketError): string => {
  const reason = error.reason
  switch (reason._tag) {
    case "SocketOpenError":
      return `cannot open the connection (${reason.kind}): ${describe(reason.cause)}`
    case "SocketCloseError":
      return `the broker closed the connection (code ${reason.code}${reason.closeReason ? `: ${reason.closeReason}` : ""})`
    case "SocketReadError":
      return `read failed: ${describe(reason.cause)}`
    case "SocketWriteError":
      return `write failed: ${describe(reason.cause)}`
    default:
      return error.message
  }
}

const UNKNOWN_CA = new Set([
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "CERT_UNTRUSTED"
])
const HOSTNAME = new Set(["ERR_TLS_CERT_ALTNAME_INVALID", "HOSTNAME_MISMATCH", "IP_ADDRESS_MISMATCH", "EMAIL_MISMATCH"])
const INVALID_CERTIFICATE = new Set([
  "CERT_SIGNATURE_FAILURE",
  "CERT_REJECTED",
  "INVALID_PURPOSE",
  "INVALID_CA",
  "CERT_CHAIN_TOO_LONG",
  "PATH_LENGTH_EXCEEDED",
  "ERROR_IN_CERT_NOT_BEFORE_FIELD",
  "ERROR_IN_CERT_NOT_AFTER_FIELD",
  "UNABLE_TO_DECRYPT_CERT_SIGNATURE",
  "UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY",
  "INVALID_EXTENSION",
  "INVALID_NON_CA",
  "UNSUPPORTED_CONSTRAINT_TYPE",
  "ERR_TLS_CERT_SIGNATURE_ALGORITHM_UNSUPPORTED"
])
const PROTOCOL_MISMATCH = new Set([
  "ERR_SSL_WRONG_VERSION_NUMBER",
  "ERR_SSL_PACKET_LENGTH_TOO_LONG",
  "ERR_SSL_UNSUPPORTED_PROTOCOL",
  "ERR_SSL_NO_PROTOCOLS_AVAILABLE",
  "ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION",
  "ERR_SSL_HTTP_REQUEST",
  "ERR_SSL_RECORD_LAYER_FAILURE"
])
/** Alerts a broker sends when it does not accept the client's certificate (or wanted one). */
const CLIENT_CERTIFICATE_ALERT =
  /ALERT_(CERTIFICATE_REQUIRED|BAD_CERTIFICATE|UNKNOWN_CA|CERTIFICATE_UNKNOWN|CERTIFICATE_EXPIRED|CERTIFICATE_REVOKED|UNSUPPORTED_CERTIFICATE|ACCESS_DENIED)$/

const WORDS: Record<TlsFailure, string> = {
  UnknownCA: "the broker's certificate is not signed by a CA the client trusts (check `ca`)",
  HostnameMismatch: "the broker's certificate is not valid for the host name (check the URL host or `servername`)",
  CertificateExpired: "the broker's certificate has expired",
  CertificateNotYetValid: "the broker's certificate is not valid yet",
  CertificateRevoked: "the broker's certificate was revoked",
  InvalidCertificate: "the broker's certificate is invalid",
  ClientCertificateRejected: "the broker rejected the client certificate, or required one (check `cert` and `key`)",
  ProtocolMismatch: "the broker does not speak TLS on this port, or no TLS version suits both ends",
  HandshakeFailed: "the TLS handshake failed"
}

const classify = (code: string): TlsFailure | undefined => {
  if (UNKNOWN_CA.has(code)) return "UnknownCA"
  if (HOSTNAME.has(code)) return "HostnameMismatch"
  if (code === "CERT_HAS_EXPIRED") return "CertificateExpired"
  if (code === "CERT_NOT_YET_VALID") return "CertificateNotYetValid"
  if (code === "CERT_REVOKED") return "CertificateRevoked"
  if (INVALID_CERTIFICATE.has(code)) return "InvalidCertificate"
  if (PROTOCOL_MISMATCH.has(code)) return "ProtocolMismatch"
  if (CLIENT_CERTIFICATE_ALERT.test(code)) return "ClientCertificateRejected"
  if (code.startsWith("ERR_SSL_") || code.startsWith("ERR_TLS_")) return "HandshakeFailed"
  return undefined
}

/** The first error in `cause`'s chain whose `code` is a TLS failure, with its classification. */
const findTlsFailure = (
  cause: unknown,
  depth = 0
): { readonly kind: TlsFailure; readonly code: string; readonly error: unknown } | undefined => {
  if (!isObject(cause) || depth > 6) return undefined
  if (typeof cause.code === "string") {
    const kind = classify(cause.code)
    if (kind !== undefined) return { kind, code: cause.code, error: cause }
  }
  if (Array.isArray(cause.errors)) {
    for (const inner of cause.errors) {
      const found = findTlsFailure(inner, depth + 1)
      if (found !== undefined) return found
    }
  }
  return findTlsFailure(cause.error, depth + 1) ?? findTlsFailure(cause.cause, depth + 1)
}

/**
 * OpenSSL's messages carry an address and a source location
 * ("40FD…:error:0A00045C:SSL routines:ssl3_read_bytes:tlsv13 alert certificate required:../deps/…:918:SSL alert number 116"):
 * keep the words ("tlsv13 alert certificate required").
 */
const opensslDetail = (message: string): string => {
  const match = /routines:[^:]*:([^:]+)/.exec(message)
  return match === null ? message : match[1].trim()
}

/** The `TlsError` a socket failure is, when it is a TLS failure. */
export const tlsErrorOf = (error: Socket.SocketError): TlsError | undefined => {
  const reason = error.reason
  const cause = "cause" in reason ? reason.cause : undefined
  const found = findTlsFailure(cause)
  if (found === undefined) return undefined
  const detail = opensslDetail(describe(found.error))
  const words = WORDS[found.kind]
  return new TlsError({
    kind: found.kind,
    reason: detail === "" || detail === found.code ? words : `${words}: ${detail}`,
    code: found.code,
    cause: error
  })
}

/** The connection error a socket failure becomes. */
export const toConnectionError = (error: Socket.SocketError): ConnectionLost | TlsError =>
  tlsErrorOf(error) ?? new ConnectionLost({ reason: socketErrorReason(error), cause: error })
