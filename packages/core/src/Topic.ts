/**
 * Topic names and topic filters: validation and matching, per MQTT 3.1.1 §4.7
 * and MQTT 5.0 §4.7–4.8 (shared subscriptions).
 *
 * @example
 * ```ts
 * import { Topic } from "@effect-mqtt/core"
 *
 * Topic.matches("sensors/+/temp", "sensors/kitchen/temp") // true
 * Topic.matches("#", "$SYS/broker/uptime") // false: `$` topics need an explicit first level
 * ```
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import { InvalidTopic } from "./MqttError.ts"

const MAX_BYTES = 65_535

/**
 * Number of bytes `s` takes in UTF-8 (no allocation).
 *
 * @since 0.1.0
 */
export const utf8Length = (s: string): number => {
  let bytes = 0
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c < 0x80) bytes += 1
    else if (c < 0x800) bytes += 2
    else if (c >= 0xd800 && c <= 0xdbff && isLowSurrogate(s.charCodeAt(i + 1))) {
      bytes += 4
      i++
    } else bytes += 3 // BMP character, or a lone surrogate (encoded as U+FFFD)
  }
  return bytes
}

const isLowSurrogate = (c: number) => c >= 0xdc00 && c <= 0xdfff

const commonProblem = (s: string): string | undefined => {
  if (s.length === 0) return "it is empty"
  if (s.length * 3 > MAX_BYTES && utf8Length(s) > MAX_BYTES) return `it is longer than ${MAX_BYTES} bytes in UTF-8`
  if (s.includes("\u0000")) return "it contains U+0000"
  if (!s.isWellFormed()) return "it is not well-formed UTF-16 (lone surrogate)"
  return undefined
}

/**
 * Why `topic` is not a valid topic name to publish to, or `undefined` when it is.
 *
 * @since 0.1.0
 */
export const topicNameProblem = (topic: string): string | undefined => {
  const problem = commonProblem(topic)
  if (problem !== undefined) return problem
  if (topic.includes("+") || topic.includes("#")) return "wildcards (+, #) are not allowed in a topic name"
  return undefined
}

const filterLevelsProblem = (filter: string): string | undefined => {
  const levels = filter.split("/")
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i]
    if (level.includes("#")) {
      if (level !== "#") return "'#' must occupy a whole level"
      if (i !== levels.length - 1) return "'#' must be the last level"
    } else if (level.includes("+") && level !== "+") {
      return "'+' must occupy a whole level"
    }
  }
  return undefined
}

/**
 * Why `filter` is not a valid topic filter, or `undefined` when it is.
 * Shared subscriptions (`$share/group/filter`) are checked too.
 *
 * @since 0.1.0
 */
export const topicFilterProblem = (filter: string): string | undefined => {
  const problem = commonProblem(filter)
  if (problem !== undefined) return problem
  if (filter.startsWith("$share/")) {
    const rest = filter.slice("$share/".length)
    const slash = rest.indexOf("/")
    if (slash <= 0) return "a shared subscription needs a group name and a filter ($share/group/filter)"
    const group = rest.slice(0, slash)
    if (group.includes("+") || group.includes("#")) return "a share group name cannot contain wildcards"
    const inner = rest.slice(slash + 1)
    if (inner.length === 0) return "a shared subscription needs a non-empty filter"
    return filterLevelsProblem(inner)
  }
  return filterLevelsProblem(filter)
}

/**
 * Succeeds with `topic` when it is a valid topic name, fails with `InvalidTopic` otherwise.
 *
 * @since 0.1.0
 */
export const validateTopicName = (topic: string): Effect.Effect<string, InvalidTopic> => {
  const reason = topicNameProblem(topic)
  return reason === undefined ? Effect.succeed(topic) : Effect.fail(new InvalidTopic({ topic, reason }))
}

/**
 * Succeeds with `filter` when it is a valid topic filter, fails with `InvalidTopic` otherwise.
 *
 * @since 0.1.0
 */
export const validateTopicFilter = (filter: string): Effect.Effect<string, InvalidTopic> => {
  const reason = topicFilterProblem(filter)
  return reason === undefined ? Effect.succeed(filter) : Effect.fail(new InvalidTopic({ topic: filter, reason }))
}

/**
 * The filter the broker matches for a subscription: `$share/group/f` matches like `f`.
 *
 * @since 0.1.0
 */
export const matchingFilter = (filter: string): string => {
  if (!filter.startsWith("$share/")) return filter
  const slash = filter.indexOf("/", "$share/".length)
  return slash < 0 ? filter : filter.slice(slash + 1)
}

/**
 * Whether the (valid) topic filter `filter` matches the topic name `topic`.
 * Topics starting with `$` are not matched by a leading `+` or `#` (MQTT §4.7.2).
 *
 * @since 0.1.0
 */
export const matches = (filter: string, topic: string): boolean => {
  const f = matchingFilter(filter)
  if (topic.charCodeAt(0) === 36 /* $ */) {
    const c = f.charCodeAt(0)
    if (c === 43 /* + */ || c === 35 /* # */) return false
  }
  let fi = 0
  let ti = 0
  for (;;) {
    const fEnd = nextSlash(f, fi)
    const single = fEnd - fi === 1
    if (single && f.charCodeAt(fi) === 35 /* # */) return true
    const tEnd = nextSlash(topic, ti)
    if (!(single && f.charCodeAt(fi) === 43 /* + */) && !sameLevel(f, fi, fEnd, topic, ti, tEnd)) return false
    const filterDone = fEnd === f.length
    const topicDone = tEnd === topic.length
    if (filterDone) return topicDone
    fi = fEnd + 1
    // The topic has no more levels: only a remaining lone `#` matches (`a/#` matches `a`).
    if (topicDone) return f.length - fi === 1 && f.charCodeAt(fi) === 35
    ti = tEnd + 1
  }
}

const sameLevel = (f: string, fi: number, fEnd: number, t: string, ti: number, tEnd: number): boolean => {
  if (fEnd - fi !== tEnd - ti) return false
  for (let i = 0; i < fEnd - fi; i++) {
    if (f.charCodeAt(fi + i) !== t.charCodeAt(ti + i)) return false
  }
  return true
}

const nextSlash = (s: string, from: number): number => {
  const i = s.indexOf("/", from)
  return i < 0 ? s.length : i
}
