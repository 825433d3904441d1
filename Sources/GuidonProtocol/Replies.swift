public import GuidonEngine
public import GuidonJSON
internal import GuidonCalendar

/// The outcome of one reload attempt, as `status` reports it.
public struct ReloadAttempt: Sendable, Hashable {
    /// What started it: `"sighup"`, `"inotify"`, `"startup"` or `"admin"` (a write through the admin socket).
    public var trigger: String
    /// When it finished (Unix seconds).
    public var at: Int64
    /// Whether the daemon now serves the file's content (also true for an unchanged file).
    public var ok: Bool
    /// The configuration version being served afterwards.
    public var configVersion: String
    /// Why it failed: the full validation report or the I/O error.
    public var error: String?
    /// The entitlements file's version being served afterwards (`nil`: none is served).
    public var entitlementsVersion: String?

    public init(trigger: String, at: Int64, ok: Bool, configVersion: String, error: String? = nil, entitlementsVersion: String? = nil) {
        self.trigger = trigger
        self.at = at
        self.ok = ok
        self.configVersion = configVersion
        self.error = error
        self.entitlementsVersion = entitlementsVersion
    }

    public var json: JSONValue {
        var o: JSONObject = ["ok": .bool(ok), "at": .string(Timestamp.rfc3339(at)), "trigger": .string(trigger),
                             "configVersion": .string(configVersion)]
        if let entitlementsVersion { o["entitlementsVersion"] = .string(entitlementsVersion) }
        if let error { o["error"] = .string(error) }
        return .object(o)
    }
}

/// The body of a `status` reply.
public struct DaemonStatus: Sendable, Hashable {
    public var daemonVersion: String
    public var configPath: String
    public var configVersion: String
    public var flagCount: Int
    public var loadedAt: Int64
    public var uptimeSeconds: Int64
    public var lenient: Bool
    public var warnings: Int
    public var connections: Int
    public var lastReload: ReloadAttempt?
    /// The entitlements file served with the flags, `nil` without one.
    public var entitlements: EntitlementsStatus?

    public init(
        daemonVersion: String, configPath: String, configVersion: String, flagCount: Int, loadedAt: Int64,
        uptimeSeconds: Int64, lenient: Bool, warnings: Int, connections: Int, lastReload: ReloadAttempt?,
        entitlements: EntitlementsStatus? = nil
    ) {
        self.entitlements = entitlements
        self.daemonVersion = daemonVersion
        self.configPath = configPath
        self.configVersion = configVersion
        self.flagCount = flagCount
        self.loadedAt = loadedAt
        self.uptimeSeconds = uptimeSeconds
        self.lenient = lenient
        self.warnings = warnings
        self.connections = connections
        self.lastReload = lastReload
    }

    public var json: JSONObject {
        var object: JSONObject = [
            "version": .string(daemonVersion),
            "configPath": .string(configPath),
            "configVersion": .string(configVersion),
            "revision": .string(configVersion),
            "flags": .int(Int64(flagCount)),
            "loadedAt": .string(Timestamp.rfc3339(loadedAt)),
            "uptimeSeconds": .int(uptimeSeconds),
            "mode": .string(lenient ? "lenient" : "strict"),
            "warnings": .int(Int64(warnings)),
            "connections": .int(Int64(connections)),
            "lastReload": lastReload?.json ?? .null,
        ]
        for (key, value) in entitlements?.json ?? JSONObject() { object[key] = value }
        return object
    }
}

/// What `status` (and, in part, `ping`) says about the entitlements file.
public struct EntitlementsStatus: Sendable, Hashable {
    public var path: String
    public var version: String
    public var features: Int
    public var plans: Int
    public var tenants: Int
    public var warnings: Int

    public init(path: String, version: String, features: Int, plans: Int, tenants: Int, warnings: Int) {
        self.path = path
        self.version = version
        self.features = features
        self.plans = plans
        self.tenants = tenants
        self.warnings = warnings
    }

    /// The members it adds to a `status` reply.
    public var json: JSONObject {
        [
            "entitlementsPath": .string(path),
            "entitlementsVersion": .string(version),
            "entitlements": .object([
                "features": .int(Int64(features)), "plans": .int(Int64(plans)), "tenants": .int(Int64(tenants)),
                "warnings": .int(Int64(warnings)),
            ]),
        ]
    }
}

/// The body of a `list` reply: every flag, in document order.
public enum FlagListing {
    public static func json(configVersion: String, flags: [FlagInfo]) -> JSONObject {
        let entries: [JSONValue] = flags.map { info in
            .object([
                "key": .string(info.key),
                "state": .string(info.state.rawValue),
                "variants": .array(info.variants.map(JSONValue.string)),
                "defaultVariant": info.defaultVariant.map(JSONValue.string) ?? .null,
                "targeting": .bool(info.hasTargeting),
                "metadata": .object(info.metadata),
            ])
        }
        return ["configVersion": .string(configVersion), "flags": .array(entries)]
    }
}

/// The event a `watch` subscription receives when a reload changes the flag set.
public struct ConfigurationChanged: Sendable, Hashable {
    public var configVersion: String
    public var added: [String]
    public var changed: [String]
    public var removed: [String]
    /// The entitlements file's version, when one is served (its features are among the keys).
    public var entitlementsVersion: String?

    public init(configVersion: String, diff: SnapshotDiff, entitlementsVersion: String? = nil) {
        self.configVersion = configVersion
        self.entitlementsVersion = entitlementsVersion
        self.added = diff.added
        self.changed = diff.changed
        self.removed = diff.removed
    }

    public var json: JSONValue {
        var object: JSONObject = [
            "event": "configurationChanged",
            "configVersion": .string(configVersion),
            "added": .array(added.map(JSONValue.string)),
            "changed": .array(changed.map(JSONValue.string)),
            "removed": .array(removed.map(JSONValue.string)),
        ]
        if let entitlementsVersion { object["entitlementsVersion"] = .string(entitlementsVersion) }
        return .object(object)
    }
}

/// RFC 3339 UTC timestamps without Foundation.
public enum Timestamp {
    /// `2026-11-21T12:03:07Z`.
    public static func rfc3339(_ unixSeconds: Int64) -> String {
        CivilDate.rfc3339UTC(unixSeconds)
    }

    /// `12:03` (UTC), for short status lines.
    public static func clock(_ unixSeconds: Int64) -> String {
        let secondsOfDay = CivilDate.floorMod(unixSeconds, 86_400)
        return "\(CivilDate.pad(secondsOfDay / 3600, 2)):\(CivilDate.pad(secondsOfDay / 60 % 60, 2))"
    }
}
