/**
 * Socket failures → connection errors: TLS failures become `TlsError` with the
 * kind and the code, wherever the code sits in the cause chain (a Node error,
 * a WebSocket error event, an AggregateError); everything else `ConnectionLost`.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Socket from "effect/socket/Socket"
import { toConnectionError } from "../src/internal/socketErrors.ts"

const codeError = (code: string, message = code) => Object.assign(new Error(message), { code })
const openError = (cause: unknown) =>
  new Socket.SocketError({ reason: new Socket.SocketOpenError({ kind: "Unknown", cause }) })
const readError = (cause: unknown) => new Socket.SocketError({ reason: new Socket.SocketReadError({ cause }) })

describe("toConnectionError", () => {
  it.each([
    ["UNABLE_TO_VERIFY_LEAF_SIGNATURE", "UnknownCA"],
    ["SELF_SIGNED_CERT_IN_CHAIN", "UnknownCA"],
    ["DEPTH_ZERO_SELF_SIGNED_CERT", "UnknownCA"],
    ["UNABLE_TO_GET_ISSUER_CERT_LOCALLY", "UnknownCA"],
    ["ERR_TLS_CERT_ALTNAME_INVALID", "HostnameMismatch"],
    ["CERT_HAS_EXPIRED", "CertificateExpired"],
    ["CERT_NOT_YET_VALID", "CertificateNotYetValid"],
    ["CERT_REVOKED", "CertificateRevoked"],
    ["CERT_SIGNATURE_FAILURE", "InvalidCertificate"],
    ["INVALID_PURPOSE", "InvalidCertificate"],
    ["ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED", "ClientCertificateRejected"],
    ["ERR_SSL_TLSV1_ALERT_UNKNOWN_CA", "ClientCertificateRejected"],
    ["ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE", "ClientCertificateRejected"],
    ["ERR_SSL_WRONG_VERSION_NUMBER", "ProtocolMismatch"],
    ["ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION", "ProtocolMismatch"],
    ["ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE", "HandshakeFailed"]
  ])("%s → TlsError %s", (code, kind) => {
    const error = toConnectionError(openError(codeError(code)))
    expect(error._tag).toBe("TlsError")
    if (error._tag === "TlsError") {
      expect(error.kind).toBe(kind)
      expect(error.code).toBe(code)
      expect(error.message).toContain(`(${code})`)
    }
  })

  it("finds the code in a WebSocket error event, an AggregateError or a cause; on reads too", () => {
    const wsEvent = { type: "error", message: "self-signed", error: codeError("SELF_SIGNED_CERT_IN_CHAIN") }
    expect(toConnectionError(openError(wsEvent))._tag).toBe("TlsError")
    const aggregate = new AggregateError([new Error("first"), codeError("CERT_HAS_EXPIRED")])
    expect(toConnectionError(openError(aggregate))._tag).toBe("TlsError")
    const wrapped = new Error("outer", { cause: codeError("ERR_TLS_CERT_ALTNAME_INVALID") })
    expect(toConnectionError(openError(wrapped))._tag).toBe("TlsError")
    const alert = toConnectionError(readError(codeError(
      "ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED",
      "40FDE6C0A17F0000:error:0A00045C:SSL routines:ssl3_read_bytes:tlsv13 alert certificate required:../deps/openssl/openssl/ssl/record/rec_layer_s3.c:918:SSL alert number 116"
    )))
    expect(alert.message).toBe(
      "TLS failed: the broker rejected the client certificate, or required one (check `cert` and `key`): " +
        "tlsv13 alert certificate required (ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED)"
    )
  })

  it("anything else is ConnectionLost with a readable reason", () => {
    const refused = toConnectionError(openError(codeError("ECONNREFUSED", "connect ECONNREFUSED 127.0.0.1:1")))
    expect(refused._tag).toBe("ConnectionLost")
    expect(refused.message).toBe("Connection lost: cannot open the connection (Unknown): connect ECONNREFUSED 127.0.0.1:1")
    const wsEvent = toConnectionError(openError({ type: "error", error: new Error("Unexpected server response: 404") }))
    expect(wsEvent.message).toContain("Unexpected server response: 404")
    const closed = toConnectionError(new Socket.SocketError({ reason: new Socket.SocketCloseError({ code: 1006 }) }))
    expect(closed.message).toBe("Connection lost: the broker closed the connection (code 1006)")
  })
})
