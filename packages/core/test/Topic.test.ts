import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import { InvalidTopic } from "../src/MqttError.ts"
import {
  matches,
  matchingFilter,
  topicFilterProblem,
  topicNameProblem,
  utf8Length,
  validateTopicFilter,
  validateTopicName
} from "../src/Topic.ts"

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/** mulberry32: a tiny deterministic PRNG, good enough to generate test inputs. */
const prng = (seed: number) => {
  let a = seed >>> 0
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  const int = (n: number): number => Math.floor(next() * n)
  const pick = <A>(items: ReadonlyArray<A>): A => items[int(items.length)]
  return { next, int, pick }
}

/**
 * Reference matcher, written as plainly as possible from MQTT §4.7:
 * split both on '/', walk level by level, recursion for the rest.
 */
const referenceMatches = (filter: string, topic: string): boolean => {
  let f = filter
  if (f.startsWith("$share/")) f = f.split("/").slice(2).join("/")
  const fLevels = f.split("/")
  const tLevels = topic.split("/")
  if (topic.startsWith("$") && (fLevels[0] === "+" || fLevels[0] === "#")) return false
  const go = (i: number, j: number): boolean => {
    if (i === fLevels.length) return j === tLevels.length
    if (fLevels[i] === "#") return true // matches the parent level too ("a/#" matches "a")
    if (j === tLevels.length) return false
    return (fLevels[i] === "+" || fLevels[i] === tLevels[j]) && go(i + 1, j + 1)
  }
  return go(0, 0)
}

const bytes = (n: number, char = "a") => char.repeat(n)

// ---------------------------------------------------------------------------
// utf8Length
// ---------------------------------------------------------------------------

describe("utf8Length", () => {
  it.each([
    "",
    "a",
    "sport/tennis/player1",
    "\u007f", // last 1-byte code point
    "\u0080", // first 2-byte code point
    "é",
    "\u07ff", // last 2-byte code point
    "\u0800", // first 3-byte code point
    "€",
    "\uffff", // last BMP code point (3 bytes)
    "\u{10000}", // first supplementary code point (4 bytes, surrogate pair)
    "😀",
    "\u{10ffff}",
    "a/é/€/😀/中文/\u0000",
    "😀😀é€a"
  ])("agrees with Buffer.byteLength for %j", (s) => {
    expect(utf8Length(s)).toBe(Buffer.byteLength(s, "utf8"))
  })

  it("agrees with Buffer.byteLength on random well-formed strings", () => {
    const rnd = prng(0xc0ffee)
    const codePoints = [0x41, 0x2f, 0x7f, 0x80, 0xe9, 0x7ff, 0x800, 0x20ac, 0xd7ff, 0xe000, 0xfffd, 0xffff, 0x10000, 0x1f600, 0x10ffff]
    for (let n = 0; n < 500; n++) {
      const length = rnd.int(20)
      let s = ""
      for (let i = 0; i < length; i++) s += String.fromCodePoint(rnd.pick(codePoints))
      expect(utf8Length(s), JSON.stringify(s)).toBe(Buffer.byteLength(s, "utf8"))
    }
  })

  // A lone surrogate is encoded by Buffer (and TextEncoder) as U+FFFD, 3 bytes.
  it.each([
    "\ud800",
    "\udc00",
    "\udc00\ud800", // reversed pair: two lone surrogates
    "\ud800a",
    "\ud800é", // high surrogate followed by a 2-byte char
    "\ud800\ud800", // two high surrogates
    "\ud800€"
  ])("agrees with Buffer.byteLength for the lone surrogate string %j", (s) => {
    expect(utf8Length(s)).toBe(Buffer.byteLength(s, "utf8"))
  })
})

// ---------------------------------------------------------------------------
// Topic names
// ---------------------------------------------------------------------------

describe("topicNameProblem", () => {
  it.each([
    "a",
    "a/b/c",
    "/",
    "/finance",
    "finance/",
    "a//b",
    " ",
    "a b/c d",
    "$SYS/broker/uptime",
    "é/€/😀",
    "$share/g/a" // a topic *name* may look like a shared subscription
  ])("accepts %j", (topic) => {
    expect(topicNameProblem(topic)).toBeUndefined()
  })

  it.each([
    ["", "it is empty"],
    ["a/+", "wildcards"],
    ["a/#", "wildcards"],
    ["+", "wildcards"],
    ["#", "wildcards"],
    ["a+b", "wildcards"],
    ["a#b", "wildcards"],
    ["a\u0000b", "U+0000"],
    ["\u0000", "U+0000"],
    ["a\ud800", "lone surrogate"],
    ["\udc00b", "lone surrogate"]
  ])("rejects %j (%s)", (topic, reason) => {
    expect(topicNameProblem(topic)).toContain(reason)
  })

  it("accepts exactly 65535 UTF-8 bytes and rejects 65536", () => {
    expect(topicNameProblem(bytes(65_535))).toBeUndefined()
    expect(topicNameProblem(bytes(65_536))).toContain("longer than 65535 bytes")
  })

  it("counts UTF-8 bytes, not UTF-16 code units", () => {
    // 2-byte chars: 32768 code units (under the limit), 65536 bytes (over)
    const twoByte = "é".repeat(32_768)
    expect(twoByte.length).toBeLessThan(65_535)
    expect(Buffer.byteLength(twoByte)).toBe(65_536)
    expect(topicNameProblem(twoByte)).toContain("longer than")
    expect(topicNameProblem("é".repeat(32_767) + "a")).toBeUndefined() // 65535 bytes

    // 3-byte chars: 21846 code units, 65538 bytes
    const threeByte = "€".repeat(21_846)
    expect(topicNameProblem(threeByte)).toContain("longer than")
    expect(topicNameProblem("€".repeat(21_845))).toBeUndefined() // 65535 bytes

    // 4-byte chars (surrogate pairs): 32768 code units, 65536 bytes
    const fourByte = "😀".repeat(16_384)
    expect(fourByte.length).toBeLessThan(65_535)
    expect(topicNameProblem(fourByte)).toContain("longer than")
    expect(topicNameProblem("😀".repeat(16_383) + "abc")).toBeUndefined() // 65535 bytes
  })
})

// ---------------------------------------------------------------------------
// Topic filters
// ---------------------------------------------------------------------------

describe("topicFilterProblem", () => {
  it.each([
    "a",
    "a/b",
    "#",
    "+",
    "+/+",
    "/+",
    "+/",
    "a/+/c",
    "a/#",
    "+/#",
    "/",
    "a//b",
    "sport/tennis/player1/#",
    "$SYS/#",
    "$SYS/+/x",
    "$share/g/a/+",
    "$share/g/#",
    "$share/group-1/+/b/#",
    "$share/g//a" // inner filter "/a"
  ])("accepts %j", (filter) => {
    expect(topicFilterProblem(filter)).toBeUndefined()
  })

  it.each([
    ["", "it is empty"],
    ["a\u0000", "U+0000"],
    ["a/\ud800", "lone surrogate"],
    ["#/a", "'#' must be the last level"],
    ["a/#/b", "'#' must be the last level"],
    ["#/#", "'#' must be the last level"],
    ["a#", "'#' must occupy a whole level"],
    ["a/b#", "'#' must occupy a whole level"],
    ["#a", "'#' must occupy a whole level"],
    ["a+/b", "'+' must occupy a whole level"],
    ["a/+b", "'+' must occupy a whole level"],
    ["++", "'+' must occupy a whole level"],
    ["$share/", "group name and a filter"],
    ["$share/g", "group name and a filter"],
    ["$share//a", "group name and a filter"],
    ["$share/g/", "non-empty filter"],
    ["$share/+/a", "cannot contain wildcards"],
    ["$share/g#/a", "cannot contain wildcards"],
    ["$share/g/a#", "'#' must occupy a whole level"],
    ["$share/g/#/a", "'#' must be the last level"]
  ])("rejects %j (%s)", (filter, reason) => {
    expect(topicFilterProblem(filter)).toContain(reason)
  })

  it("applies the 65535-byte limit in UTF-8 bytes", () => {
    expect(topicFilterProblem(bytes(65_533) + "/#")).toBeUndefined()
    expect(topicFilterProblem(bytes(65_534) + "/#")).toContain("longer than")
    const twoByte = "é".repeat(32_768)
    expect(twoByte.length).toBeLessThan(65_535)
    expect(topicFilterProblem(twoByte)).toContain("longer than")
  })
})

// ---------------------------------------------------------------------------
// Effectful validation
// ---------------------------------------------------------------------------

describe("validateTopicName / validateTopicFilter", () => {
  it.effect("validateTopicName succeeds with the topic when it is valid", () =>
    Effect.gen(function*() {
      expect(yield* validateTopicName("a/b")).toBe("a/b")
    }))

  it.effect("validateTopicName fails with InvalidTopic carrying topic and reason", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(validateTopicName("a/+"))
      expect(error).toBeInstanceOf(InvalidTopic)
      expect(error._tag).toBe("InvalidTopic")
      expect(error.topic).toBe("a/+")
      expect(error.reason).toBe(topicNameProblem("a/+"))
      expect(error.message).toContain("a/+")
    }))

  it.effect("validateTopicName fails for an empty topic", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(validateTopicName(""))
      expect(Exit.isFailure(exit)).toBe(true)
      const error = yield* Effect.flip(validateTopicName(""))
      expect(error.reason).toBe("it is empty")
    }))

  it.effect("validateTopicFilter succeeds with the filter when it is valid", () =>
    Effect.gen(function*() {
      expect(yield* validateTopicFilter("a/+/#")).toBe("a/+/#")
      expect(yield* validateTopicFilter("$share/g/a/+")).toBe("$share/g/a/+")
    }))

  it.effect("validateTopicFilter fails with InvalidTopic", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(validateTopicFilter("a/#/b"))
      expect(error).toBeInstanceOf(InvalidTopic)
      expect(error.topic).toBe("a/#/b")
      expect(error.reason).toBe("'#' must be the last level")
    }))

  it.effect("InvalidTopic message truncates very long topics", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(validateTopicName(bytes(70_000)))
      expect(error.topic.length).toBe(70_000)
      expect(error.message.length).toBeLessThan(200)
    }))
})

// ---------------------------------------------------------------------------
// Matching
// ---------------------------------------------------------------------------

describe("matchingFilter", () => {
  it.each([
    ["a/b", "a/b"],
    ["$share/g/a/+", "a/+"],
    ["$share/g/#", "#"],
    ["$SYS/#", "$SYS/#"],
    ["$shared/g/a", "$shared/g/a"]
  ])("%j -> %j", (filter, expected) => {
    expect(matchingFilter(filter)).toBe(expected)
  })
})

describe("matches", () => {
  it.each([
    // MQTT 3.1.1 §4.7.1.2 (multi-level wildcard)
    ["sport/tennis/player1/#", "sport/tennis/player1"],
    ["sport/tennis/player1/#", "sport/tennis/player1/ranking"],
    ["sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon"],
    ["sport/#", "sport"],
    ["#", "sport/tennis"],
    ["#", "/"],
    // §4.7.1.3 (single-level wildcard)
    ["sport/tennis/+", "sport/tennis/player1"],
    ["sport/tennis/+", "sport/tennis/player2"],
    ["sport/+", "sport/"],
    ["+", "sport"],
    ["+/+", "/finance"],
    ["/+", "/finance"],
    ["+/tennis/#", "sport/tennis/player1"],
    // §4.7.2 ($ topics)
    ["$SYS/#", "$SYS/x"],
    ["$SYS/#", "$SYS"],
    ["$SYS/monitor/+", "$SYS/monitor/Clients"],
    // exact and empty levels
    ["a/b", "a/b"],
    ["a//b", "a//b"],
    ["a/+/b", "a//b"],
    ["+/+", "/"],
    ["a/#", "a/"],
    // shared subscriptions match like their inner filter
    ["$share/g/a/+", "a/b"],
    ["$share/g/#", "a/b/c"],
    ["$share/g/sport/#", "sport"]
  ])("%j matches %j", (filter, topic) => {
    expect(matches(filter, topic)).toBe(true)
  })

  it.each([
    ["sport/tennis/+", "sport/tennis/player1/ranking"],
    ["sport/+", "sport"],
    ["+", "/finance"],
    ["+", "a/b"],
    ["#", "$SYS/x"],
    ["+/monitor/Clients", "$SYS/monitor/Clients"],
    ["+", "$SYS"],
    ["$share/g/#", "$SYS/x"],
    ["$share/g/+/x", "$SYS/x"],
    ["a/b", "a/b/c"],
    ["a/b/c", "a/b"],
    ["a/b", "a"],
    ["a", "a/"],
    ["a", "/a"],
    ["a/+/b", "a/b"],
    ["/+", "finance"],
    ["a//b", "a/b"],
    ["A/b", "a/b"], // case-sensitive
    ["$share/g/a/+", "$share/g/a/b"],
    ["sport/tennis/#", "sport/tennisX"]
  ])("%j does not match %j", (filter, topic) => {
    expect(matches(filter, topic)).toBe(false)
  })

  // A trailing '/' means a final empty level, in the filter as in the topic.
  it.each([
    ["a/", "a/", true],
    ["a/", "a", false],
    ["/", "/", true],
    ["/", "a", false],
    ["+/", "a/", true],
    ["a//", "a//", true],
    ["a//", "a/", false]
  ] as const)("filter with a trailing empty level: %j vs %j is %s", (filter, topic, expected) => {
    expect(referenceMatches(filter, topic)).toBe(expected) // sanity check of the reference
    expect(matches(filter, topic)).toBe(expected)
  })

  it("agrees with a reference implementation on random valid filters and topics (seeded)", () => {
    const rnd = prng(20240531)
    const topicLevels = ["a", "b", "c", "", "ab", "$SYS", "$x"]
    const filterLevels = ["a", "b", "c", "", "ab", "+", "+", "$SYS"]

    const randomTopic = () => {
      const n = 1 + rnd.int(4)
      const levels: Array<string> = []
      for (let i = 0; i < n; i++) levels.push(rnd.pick(topicLevels))
      return levels.join("/")
    }
    const randomFilter = () => {
      const n = 1 + rnd.int(4)
      const levels: Array<string> = []
      for (let i = 0; i < n; i++) levels.push(rnd.pick(filterLevels))
      if (rnd.next() < 0.3) levels[levels.length - 1] = "#"
      const filter = levels.join("/")
      return rnd.next() < 0.1 ? `$share/grp/${filter}` : filter
    }

    const mismatches: Array<{ filter: string; topic: string; expected: boolean }> = []
    let checked = 0
    let matched = 0
    for (let n = 0; n < 20_000; n++) {
      const filter = randomFilter()
      // half the time, derive the topic from the filter so that matches are frequent
      const topic = rnd.next() < 0.5
        ? filter.replace(/^\$share\/grp\//, "").split("/").map((l) => l === "+" ? rnd.pick(topicLevels) : l === "#" ? randomTopic() : l).join("/")
        : randomTopic()
      if (topicFilterProblem(filter) !== undefined || topicNameProblem(topic) !== undefined) continue
      checked++
      const expected = referenceMatches(filter, topic)
      if (expected) matched++
      if (matches(filter, topic) !== expected) mismatches.push({ filter, topic, expected })
    }
    // the generator must produce a meaningful sample of both outcomes
    expect(checked).toBeGreaterThan(15_000)
    expect(matched).toBeGreaterThan(checked / 5)
    expect(checked - matched).toBeGreaterThan(checked / 5)
    expect(mismatches.slice(0, 10)).toEqual([])
  })
})
