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
import { Effect } from "effect"
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
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      bytes += 4
      i++
    } else bytes += 3
  }
  return bytes
}

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
  const fl = f.length
  const tl = topic.length
  while (fi < fl) {
    const fEnd = nextSlash(f, fi)
    const level = f.slice(fi, fEnd)
    if (level === "#") return true
    if (ti > tl) {
      return false
    }
    const tEnd = nextSlash(topic, ti)
    if (level !== "+" && level !== topic.slice(ti, tEnd)) return false
    fi = fEnd + 1
    ti = tEnd + 1
    // `a/#` also matches `a`: the filter's remaining level is a lone '#'
    if (ti > tl && fi < fl && f.slice(fi) === "#") return true
  }
  return ti > tl
}

const nextSlash = (s: string, from: number): number => {
  const i = s.indexOf("/", from)
  return i < 0 ? s.length : i
}
