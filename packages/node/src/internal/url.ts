/**
 * Broker URLs: scheme → transport and default port, user info → credentials,
 * query string → client options. Every problem is an `InvalidOptions` whose
 * reason never contains the password (nor any query value that could be one).
 */
import { MqttError, type MqttOptions } from "@effect-mqtt/core"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Net from "node:net"

/** How bytes reach the broker. */
export type Transport = "tcp" | "tls" | "ws" | "wss" | "unix"

/** Client options a URL query string may set. */
export interface UrlOptions {
  readonly clientId?: string
  readonly keepAlive?: number
  readonly cleanSession?: boolean
  readonly protocolVersion?: MqttOptions.ProtocolVersion
  readonly connectTimeout?: number | string
  readonly sessionExpiryInterval?: number
  readonly capacity?: number
  readonly strategy?: MqttOptions.Strategy
  readonly maxInflight?: number
}

/** A parsed broker URL. */
export interface BrokerAddress {
  /** The scheme as written, without `:` (`"mqtts"`, `"ws"`…). */
  readonly scheme: string
  readonly transport: Transport
  /** Host name or IP address (IPv6 without brackets); `""` for `unix://`. */
  readonly host: string
  /** TCP port; 0 for `unix://`. */
  readonly port: number
  /**
   * `ws://`/`wss://`: the HTTP request path and query (default `/mqtt`);
   * `unix://`: the socket file; `""` otherwise.
   */
  readonly path: string
  readonly username: string | undefined
  readonly password: Redacted.Redacted<string> | undefined
  /** Client options set by the query string. */
  readonly options: UrlOptions
}

const SCHEMES: Record<string, { readonly transport: Transport; readonly port: number }> = {
  mqtt: { transport: "tcp", port: 1883 },
  tcp: { transport: "tcp", port: 1883 },
  mqtts: { transport: "tls", port: 8883 },
  ssl: { transport: "tls", port: 8883 },
  tls: { transport: "tls", port: 8883 },
  ws: { transport: "ws", port: 80 },
  wss: { transport: "wss", port: 443 },
  unix: { transport: "unix", port: 0 }
}

/** The query parameters that set client options (the README lists them). */
export const QUERY_PARAMETERS = [
  "clientId",
  "keepAlive",
  "clean",
  "cleanSession",
  "cleanStart",
  "protocolVersion",
  "connectTimeout",
  "sessionExpiryInterval",
  "capacity",
  "strategy",
  "maxInflight"
] as const

/** The URL as it may appear in an error: no user info, no query (either could hold a secret). */
export const displayUrl = (url: string): string => {
  const noQuery = url.replace(/[?#].*$/s, "")
  // Everything up to the last "@" may be user info (a password may contain a raw "@" or "/").
  const at = noQuery.lastIndexOf("@")
  if (at < 0) return noQuery
  const scheme = /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\//.exec(noQuery)?.[0] ?? ""
  return `${scheme}<redacted>@${noQuery.slice(at + 1)}`
}

const invalid = (url: string, reason: string) =>
  new MqttError.InvalidOptions({ reason: `url ${JSON.stringify(displayUrl(url))}: ${reason}` })

const integer = (value: string): number | undefined => /^\d+$/.test(value) ? Number(value) : undefined

const boolean = (value: string): boolean | undefined =>
  value === "true" || value === "1" ? true : value === "false" || value === "0" ? false : undefined

/** Reads the client options in `params`; unknown parameters are returned apart (kept for ws/wss). */
const readQuery = (
  url: string,
  params: URLSearchParams
): MqttError.InvalidOptions | { readonly options: UrlOptions; readonly rest: Array<[string, string]> } => {
  const options: Record<string, unknown> = {}
  const rest: Array<[string, string]> = []
  const seen = new Set<string>()
  for (const [name, value] of params) {
    if (!(QUERY_PARAMETERS as ReadonlyArray<string>).includes(name)) {
      rest.push([name, value])
      continue
    }
    const key = name === "clean" || name === "cleanStart" ? "cleanSession" : name
    if (seen.has(key)) return invalid(url, `query parameter ${name} is given more than once`)
    seen.add(key)
    // The value is not echoed: a query string is no place for a secret, but it may hold one by mistake.
    const bad = (expected: string) => invalid(url, `query parameter ${name} must be ${expected}`)
    switch (name) {
      case "clientId":
        options.clientId = value
        break
      case "strategy":
        if (value !== "suspend" && value !== "dropping" && value !== "sliding") {
          return bad("suspend, dropping or sliding")
        }
        options.strategy = value
        break
      case "clean":
      case "cleanSession":
      case "cleanStart": {
        const flag = boolean(value)
        if (flag === undefined) return bad("true, false, 1 or 0")
        options.cleanSession = flag
        break
      }
      case "protocolVersion": {
        const version = value === "4" || value === "3.1.1" ? 4 : value === "5" || value === "5.0" ? 5 : undefined
        if (version === undefined) return bad("4 (or 3.1.1) or 5")
        options.protocolVersion = version
        break
      }
      case "connectTimeout": {
        // A bare number is milliseconds (as in MQTT.js); otherwise a duration such as "10 seconds".
        const millis = integer(value)
        options.connectTimeout = millis ?? value
        break
      }
      default: {
        const n = integer(value)
        if (n === undefined) return bad("a non-negative integer")
        options[name] = n
      }
    }
  }
  return { options: options as UrlOptions, rest }
}

/** Parses one broker URL (see the README for the schemes and query parameters). */
export const parseUrl = (url: string): Effect.Effect<BrokerAddress, MqttError.InvalidOptions> =>
  Effect.suspend((): Effect.Effect<BrokerAddress, MqttError.InvalidOptions> => {
    if (typeof url !== "string") {
      return Effect.fail(new MqttError.InvalidOptions({ reason: "url must be a string" }))
    }
    let parsed: URL
    try {
      parsed = new URL(url)
    } catch {
      return Effect.fail(invalid(url, "not a valid URL"))
    }
    const scheme = parsed.protocol.slice(0, -1).toLowerCase()
    const known = SCHEMES[scheme]
    if (known === undefined) {
      return Effect.fail(
        invalid(
          url,
          `scheme "${scheme}:" is not supported (use mqtt://, tcp://, mqtts://, ssl://, tls://, ws://, wss:// or unix://)`
        )
      )
    }
    const query = readQuery(url, parsed.searchParams)
    if (query instanceof MqttError.InvalidOptions) return Effect.fail(query)
    let username: string | undefined
    let password: Redacted.Redacted<string> | undefined
    try {
      username = parsed.username === "" ? undefined : decodeURIComponent(parsed.username)
      password = parsed.password === "" ? undefined : Redacted.make(decodeURIComponent(parsed.password))
    } catch {
      return Effect.fail(invalid(url, "the user info is not valid percent-encoding"))
    }
    if (password !== undefined && username === undefined) {
      return Effect.fail(invalid(url, "has a password but no username"))
    }
    const transport = known.transport

    if (transport === "unix") {
      if (parsed.hostname !== "" && parsed.hostname !== "localhost") {
        return Effect.fail(invalid(url, "a unix:// URL has no host: write unix:///path/to/broker.sock"))
      }
      if (parsed.port !== "") return Effect.fail(invalid(url, "a unix:// URL has no port"))
      if (query.rest.length > 0) {
        return Effect.fail(invalid(url, `unknown query parameter ${JSON.stringify(query.rest[0][0])} (supported: ${QUERY_PARAMETERS.join(", ")})`))
      }
      let path: string
      try {
        path = decodeURIComponent(parsed.pathname)
      } catch {
        return Effect.fail(invalid(url, "the path is not valid percent-encoding"))
      }
      if (path === "" || path === "/") return Effect.fail(invalid(url, "has no socket path: write unix:///path/to/broker.sock"))
      return Effect.succeed({ scheme, transport, host: "", port: 0, path, username, password, options: query.options })
    }

    const host = parsed.hostname.startsWith("[") ? parsed.hostname.slice(1, -1) : parsed.hostname
    if (host === "") return Effect.fail(invalid(url, "has no host"))
    if (host.includes("%") && Net.isIP(host) === 0) {
      return Effect.fail(invalid(url, "the host is not valid"))
    }
    const port = parsed.port === "" ? known.port : Number(parsed.port)
    if (!Number.isInteger(port) || port < 1 || port > 65_535) {
      return Effect.fail(invalid(url, `port must be between 1 and 65535`))
    }

    if (transport === "ws" || transport === "wss") {
      // "ws://host" (no path at all) means /mqtt, as in MQTT.js; "ws://host/" means "/".
      const explicitPath = /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\/[^/?#]*\//.test(url)
      const pathname = explicitPath ? parsed.pathname : "/mqtt"
      // Parameters that are not client options stay in the request (e.g. a signed URL's).
      const search = query.rest.length === 0 ? "" : `?${new URLSearchParams(query.rest).toString()}`
      return Effect.succeed({ scheme, transport, host, port, path: pathname + search, username, password, options: query.options })
    }

    if (parsed.pathname !== "" && parsed.pathname !== "/") {
      return Effect.fail(invalid(url, `a path is only meaningful in ws://, wss:// and unix:// URLs`))
    }
    if (query.rest.length > 0) {
      return Effect.fail(invalid(url, `unknown query parameter ${JSON.stringify(query.rest[0][0])} (supported: ${QUERY_PARAMETERS.join(", ")})`))
    }
    return Effect.succeed({ scheme, transport, host, port, path: "", username, password, options: query.options })
  })

/** Every option `other` sets, `first` sets to the same value (`other` may leave any out). */
const agrees = (first: UrlOptions, other: UrlOptions): boolean =>
  Object.entries(other).every(([key, value]) => (first as Record<string, unknown>)[key] === value)

/**
 * Client options from the URLs, under the explicit ones: the first URL's user
 * info and query options apply unless given as options; later URLs (failover)
 * must not disagree with the first.
 */
export const mergeUrlOptions = <O extends MqttOptions.MqttClientOptions>(
  urls: ReadonlyArray<string>,
  addresses: ReadonlyArray<BrokerAddress>,
  options: O
): Effect.Effect<O, MqttError.InvalidOptions> =>
  Effect.suspend((): Effect.Effect<O, MqttError.InvalidOptions> => {
    const first = addresses[0]
    for (let i = 1; i < addresses.length; i++) {
      const other = addresses[i]
      const userInfoAgrees = (other.username === undefined && other.password === undefined) ||
        (other.username === first.username &&
          (other.password === undefined || first.password === undefined
            ? other.password === first.password
            : Redacted.value(other.password) === Redacted.value(first.password)))
      if (!userInfoAgrees || !agrees(first.options, other.options)) {
        return Effect.fail(
          invalid(
            urls[i],
            "its user info or client options differ from the first URL's; the client has one set of credentials " +
              "and options: put them in the first URL (or in the options) and repeat them identically, or leave them out"
          )
        )
      }
    }
    const fromUrl: Record<string, unknown> = { ...first.options }
    if (options.cleanSession !== undefined || options.cleanStart !== undefined) delete fromUrl.cleanSession
    if (first.username !== undefined) fromUrl.username = first.username
    if (first.password !== undefined) fromUrl.password = first.password
    const merged: Record<string, unknown> = { ...fromUrl }
    for (const [key, value] of Object.entries(options)) {
      if (value !== undefined) merged[key] = value
    }
    return Effect.succeed(merged as O)
  })

/**
 * The broker a Server Reference names (MQTT 5 §4.11: `host`, `host:port` or
 * `[ipv6]:port`; the first of a space-separated list), reached like `base`.
 */
export const serverReferenceAddress = (reference: string, base: BrokerAddress): BrokerAddress | undefined => {
  const first = reference.trim().split(/\s+/)[0]
  if (first === undefined || first.length === 0 || base.transport === "unix") return undefined
  const match = /^\[([^\]]+)\](?::(\d+))?$/.exec(first) ?? /^([^:]+)(?::(\d+))?$/.exec(first)
  if (match === null) return undefined
  const port = match[2] === undefined ? base.port : Number(match[2])
  if (!Number.isInteger(port) || port <= 0 || port > 65_535) return undefined
  return { ...base, host: match[1], port }
}
