import GuidonEngine
import GuidonJSON

/// Configuration merging: `over`'s members replace `base`'s, recursively where both are
/// objects; anything else (arrays included) is replaced whole. `null` is a value like any other.
///
/// Recursive, because configurations nest (`{"models": {"chat": …, "voice": …}}`) and a grant
/// that changes one model should not drop the other. Layers are applied one at a time, in order
/// (the default, each plan from the root of the inheritance chain down, then an override):
/// recursive merging is not associative when a layer replaces an object by a scalar, so the
/// order is part of the meaning.
func merge(_ base: JSONValue, _ over: JSONValue) -> JSONValue {
    guard case .object(var merged) = base, case .object(let top) = over else { return over }
    for (key, value) in top {
        if let existing = merged[key] {
            merged[key] = merge(existing, value)
        } else {
            merged[key] = value
        }
    }
    return .object(merged)
}

/// JSON types as a configuration compares them: integers and floats are both numbers.
func shapeName(_ value: JSONValue) -> String {
    switch value {
    case .int, .double: "number"
    default: value.typeName
    }
}

/// Checks a grant's or override's `config` (already known to be an object) against a
/// configuration feature's default: every member must be one the default declares, of the same
/// type (both objects: checked member by member; `null` on either side matches anything).
/// Problems are `.strict`: lenient mode merges the configuration as written.
func checkShape(
    of config: JSONObject, against defaults: JSONObject, feature: String, at path: [PathSegment], into problems: inout Problems
) {
    for (key, value) in config {
        let memberPath = path + [.key(key)]
        guard let expected = defaults[key] else {
            problems.strict(memberPath,
                "\(quoted(key)) is not a member of the default configuration of \(quoted(feature)) (\(defaults.isEmpty ? "which has none" : "it has " + quotedList(defaults.keys)))\(suggestion(for: key, among: defaults.keys))")
            continue
        }
        switch (expected, value) {
        case (.null, _), (_, .null):
            continue
        case (.object(let inner), .object(let given)):
            checkShape(of: given, against: inner, feature: feature, at: memberPath, into: &problems)
        default:
            if shapeName(expected) != shapeName(value) {
                problems.strict(memberPath,
                    "is \(article(shapeName(value))), but \(quoted(key)) in the default configuration of \(quoted(feature)) is \(article(shapeName(expected)))")
            }
        }
    }
}

/// A grant's or override's `config`: an object, only for a configuration feature, shaped like
/// its default. `nil` when absent or unusable.
func readConfig(
    _ value: JSONValue?, feature: FeatureInfo, at path: [PathSegment], what: String, into problems: inout Problems
) -> JSONObject? {
    guard let value else { return nil }
    guard feature.kind == .configuration else {
        problems.error(path,
            "\(quoted(feature.key)) is a boolean feature: \(what) cannot configure it (only a configuration feature, whose default is an object, takes a \"config\")")
        return nil
    }
    guard case .object(let config) = value, case .object(let defaults) = feature.defaultValue else {
        problems.error(path, "must be an object (merged over the feature's default), not \(article(value.typeName))")
        return nil
    }
    checkShape(of: config, against: defaults, feature: feature.key, at: path, into: &problems)
    return config
}

/// Reads a `limits` array. Returns `nil` (with problems) when it is not one.
func readLimits(_ value: JSONValue, at path: [PathSegment], into problems: inout Problems) -> [Limit]? {
    guard case .array(let items) = value else {
        problems.error(path, "must be an array of limits, e.g. [{\"per\": \"day\", \"max\": 10}], not \(article(value.typeName))")
        return nil
    }
    var limits: [Limit] = []
    var valid = true
    var seen: [(window: Limit.Window, scope: Limit.Scope, index: Int)] = []
    for (index, item) in items.enumerated() {
        let itemPath = path + [.index(index)]
        guard case .object(let object) = item else {
            problems.error(itemPath, "a limit must be an object such as {\"per\": \"day\", \"max\": 10}, not \(article(item.typeName))")
            valid = false
            continue
        }
        let errorsBefore = problems.errorCount
        for key in object.keys where !["per", "max", "scope", "mode", "failMode"].contains(key) {
            problems.warning(itemPath + [.key(key)],
                "unknown member \(quoted(key)) is ignored (a limit has \"per\", \"max\", \"scope\", \"mode\", \"failMode\")")
        }
        let per: Limit.Window? = choice(object["per"], named: "per", at: itemPath, required: true,
            cases: Limit.Window.allCases, name: \.name, into: &problems)
        let scope: Limit.Scope? = choice(object["scope"], named: "scope", at: itemPath, required: false,
            cases: Limit.Scope.allCases, name: \.name, into: &problems)
        let mode: Limit.Mode? = choice(object["mode"], named: "mode", at: itemPath, required: false,
            cases: Limit.Mode.allCases, name: \.name, into: &problems)
        let failMode: Limit.FailMode? = choice(object["failMode"], named: "failMode", at: itemPath, required: false,
            cases: Limit.FailMode.allCases, name: \.name, into: &problems)
        var max: Int64?
        switch object["max"] {
        case nil:
            problems.error(itemPath, "missing \"max\": the most a window allows (a positive integer)")
        case .int(let n)? where n > 0:
            max = n
        case let other?:
            problems.error(itemPath + [.key("max")], "must be a positive integer, not \(other.typeName == "integer" || other.typeName == "number" ? other.description : article(other.typeName))")
        }
        guard problems.errorCount == errorsBefore, let per, let max else {
            valid = false
            continue
        }
        let limit = Limit(per: per, max: max, scope: scope ?? .tenant, mode: mode ?? .hard, failMode: failMode ?? .open)
        if let earlier = seen.first(where: { $0.window == limit.per && $0.scope == limit.scope }) {
            problems.error(itemPath,
                "a second limit per \(limit.per.name) for scope \(quoted(limit.scope.name)) (the first is \(renderPath(path + [.index(earlier.index)]))); each window and scope may be limited once")
            valid = false
            continue
        }
        seen.append((limit.per, limit.scope, index))
        limits.append(limit)
    }
    return valid ? limits : nil
}

/// A member whose value must be one of a few strings.
private func choice<T>(
    _ value: JSONValue?, named member: String, at path: [PathSegment], required: Bool, cases: [T], name: (T) -> String,
    into problems: inout Problems
) -> T? {
    let names = cases.map(name)
    switch value {
    case nil:
        if required { problems.error(path, "missing \(quoted(member)): one of \(quotedList(names))") }
        return nil
    case .string(let s)?:
        if let found = cases.first(where: { name($0) == s }) { return found }
        problems.error(path + [.key(member)],
            "\(quoted(s)) is not one of \(quotedList(names))\(suggestion(for: s, among: names))")
        return nil
    case let other?:
        problems.error(path + [.key(member)], "must be one of \(quotedList(names)), not \(article(other.typeName))")
        return nil
    }
}

/// Whether two configurations, or any two values, are the same JSON, byte for byte in the
/// document: member order counts, strings compare by their bytes, numbers bit for bit.
func identical(_ a: JSONValue?, _ b: JSONValue?) -> Bool {
    switch (a, b) {
    case (nil, nil): return true
    case (.null?, .null?): return true
    case (.bool(let x)?, .bool(let y)?): return x == y
    case (.int(let x)?, .int(let y)?): return x == y
    case (.double(let x)?, .double(let y)?): return x.bitPattern == y.bitPattern
    case (.string(let x)?, .string(let y)?): return x.utf8.elementsEqual(y.utf8)
    case (.array(let x)?, .array(let y)?):
        return x.count == y.count && zip(x, y).allSatisfy { identical($0, $1) }
    case (.object(let x)?, .object(let y)?):
        return x.count == y.count
            && zip(x, y).allSatisfy { $0.key.utf8.elementsEqual($1.key.utf8) && identical($0.value, $1.value) }
    default: return false
    }
}
