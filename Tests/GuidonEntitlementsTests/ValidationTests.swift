import GuidonEngine
import GuidonJSON
import Testing

@testable import GuidonEntitlements

/// Every problem validation reports, with its path, message, severity and position.
@Suite struct ValidationTests {
    static let features = #""f": {"description": "F", "default": false}, "c": {"description": "C", "default": {"n": 1, "s": "x", "o": {"k": true}, "any": null}}"#

    static func document(features: String = features, plans: String = #""p": {"displayName": "P", "order": 1}"#, tenants: String = "", extra: String = "") -> String {
        #"{"features": {\#(features)}, "plans": {\#(plans)}, "tenants": {\#(tenants)}\#(extra)}"#
    }

    static func plan(_ grants: String, extra: String = "") -> String {
        #""p": {"displayName": "P", "order": 1, "grants": {\#(grants)}\#(extra)}"#
    }

    static func tenant(_ members: String) -> String {
        #""t": {"plan": "p", "status": "active"\#(members)}"#
    }

    static func override(_ members: String, feature: String = "c") -> String {
        tenant(#", "overrides": {"\#(feature)": {\#(members)}}"#)
    }

    struct Case: CustomTestStringConvertible, Sendable {
        var document: String
        var path: String
        var message: String
        var severity: Diagnostic.Severity = .error
        var testDescription: String { "\(path): \(message)" }
    }

    static let errors: [Case] = [
        // The document
        Case(document: "[1]", path: "$",
            message: "an entitlements document must be a JSON object with \"features\", \"plans\" and \"tenants\", not an array"),
        Case(document: "{}", path: "$",
            message: "missing \"features\": an entitlements document needs a \"features\" object (feature key → {\"description\", \"default\"})"),
        Case(document: #"{"features": []}"#, path: "features", message: "must be an object mapping feature keys to features, not an array"),
        Case(document: #"{"features": {}, "plans": 1}"#, path: "plans", message: "must be an object mapping plan names to plans, not an integer"),
        Case(document: #"{"features": {}, "tenants": "x"}"#, path: "tenants", message: "must be an object mapping tenant ids to tenants, not a string"),
        Case(document: #"{"features": {}, "$schema": 3}"#, path: "$schema", message: "must be a string (a schema URL), not an integer"),
        Case(document: #"{"features": {}, "timezone": 1}"#, path: "timezone",
            message: "must be an IANA time zone name such as \"Europe/Paris\" or \"UTC\", not an integer"),
        Case(document: #"{"features": {}, "timezone": "Europe/Pari"}"#, path: "timezone",
            message: "unknown time zone \"Europe/Pari\"; use an IANA name such as \"Europe/Paris\" or \"UTC\""),
        // Features
        Case(document: document(features: #""f": true"#), path: "features.f",
            message: "a feature must be an object with \"description\" and \"default\", not a boolean"),
        Case(document: document(features: #""": {"description": "x", "default": true}"#), path: #"features[""]"#,
            message: "a feature key must not be empty"),
        Case(document: document(features: #""*": {"description": "x", "default": true}"#), path: #"features.*"#,
            message: "\"*\" cannot be a feature key: in a plan's grants it means every feature"),
        Case(document: document(features: #""f": {"description": "F"}"#), path: "features.f",
            message: "missing \"default\": true or false for a boolean feature, an object for a configuration feature"),
        Case(document: document(features: #""f": {"description": "F", "default": "on"}"#), path: "features.f.default",
            message: "must be true or false (a boolean feature) or an object (a configuration feature), not a string"),
        Case(document: document(features: #""f": {"description": 1, "default": true}"#), path: "features.f.description",
            message: "must be a string, not an integer"),
        Case(document: document(features: #""f": {"description": "F", "category": [], "default": true}"#), path: "features.f.category",
            message: "must be a string, not an array"),
        // Plans
        Case(document: document(plans: #""p": []"#), path: "plans.p",
            message: "a plan must be an object with \"displayName\", \"order\" and \"grants\", not an array"),
        Case(document: document(plans: #""": {"order": 1}"#), path: #"plans[""]"#, message: "a plan name must not be empty"),
        Case(document: document(plans: #""p": {"displayName": 2, "order": 1}"#), path: "plans.p.displayName", message: "must be a string, not an integer"),
        Case(document: document(plans: #""p": {"description": false, "order": 1}"#), path: "plans.p.description", message: "must be a string, not a boolean"),
        Case(document: document(plans: #""p": {"order": 1.5}"#), path: "plans.p.order", message: "must be an integer (lowest first), not 1.5"),
        Case(document: document(plans: #""p": {"order": "1"}"#), path: "plans.p.order", message: "must be an integer (lowest first), not a string"),
        Case(document: document(plans: #""p": {"order": 1, "inherits": 2}"#), path: "plans.p.inherits", message: "must name a plan (a string), not an integer"),
        Case(document: document(plans: #""a": {"order": 1, "inherits": "c"}, "b": {"order": 2, "inherits": "a"}, "c": {"order": 3, "inherits": "b"}"#),
            path: "plans.a.inherits", message: "plan \"a\" inherits from itself: \"a\" → \"c\" → \"b\" → \"a\""),
        Case(document: document(plans: #""a": {"order": 1, "inherits": "a"}"#),
            path: "plans.a.inherits", message: "plan \"a\" inherits from itself: \"a\" → \"a\""),
        Case(document: document(plans: #""p": {"order": 1, "grants": []}"#), path: "plans.p.grants",
            message: "must be an object mapping feature keys to grants, not an array"),
        Case(document: document(plans: plan(#""*": false"#)), path: "plans.p.grants.*", message: "\"*\" grants every feature and can only be true, not false"),
        Case(document: document(plans: plan(#""f": "yes""#)), path: "plans.p.grants.f",
            message: "a grant must be true, false or an object {\"granted\", \"config\", \"limits\"}, not a string"),
        Case(document: document(plans: plan(#""f": {"granted": 1}"#)), path: "plans.p.grants.f.granted", message: "must be true or false, not an integer"),
        Case(document: document(plans: plan(#""f": {"config": {}}"#)), path: "plans.p.grants.f.config",
            message: "\"f\" is a boolean feature: a grant cannot configure it (only a configuration feature, whose default is an object, takes a \"config\")"),
        Case(document: document(plans: plan(#""c": {"config": [1]}"#)), path: "plans.p.grants.c.config",
            message: "must be an object (merged over the feature's default), not an array"),
        // Tenants
        Case(document: document(tenants: #""t": "p""#), path: "tenants.t",
            message: "a tenant must be an object with \"plan\" and \"status\", not a string"),
        Case(document: document(tenants: #""": {"plan": "p", "status": "active"}"#), path: #"tenants[""]"#, message: "a tenant id must not be empty"),
        Case(document: document(tenants: #""t": {"status": "active"}"#), path: "tenants.t", message: "missing \"plan\": the name of the tenant's plan (one of \"p\")"),
        Case(document: document(tenants: #""t": {"plan": 1, "status": "active"}"#), path: "tenants.t.plan", message: "must name a plan (a string), not an integer"),
        Case(document: document(tenants: #""t": {"plan": "p"}"#), path: "tenants.t",
            message: "missing \"status\": one of \"active\", \"trialing\", \"past_due\", \"canceled\", \"expired\""),
        Case(document: document(tenants: #""t": {"plan": "p", "status": "activ"}"#), path: "tenants.t.status",
            message: "\"activ\" is not a status; use one of \"active\", \"trialing\", \"past_due\", \"canceled\", \"expired\"; did you mean \"active\"?"),
        Case(document: document(tenants: #""t": {"plan": "p", "status": true}"#), path: "tenants.t.status",
            message: "must be one of \"active\", \"trialing\", \"past_due\", \"canceled\", \"expired\", not a boolean"),
        Case(document: document(tenants: tenant(#", "validUntil": "2027-02-30T00:00:00Z""#)), path: "tenants.t.validUntil",
            message: "\"2027-02-30T00:00:00Z\" is not an RFC 3339 timestamp (e.g. \"2027-06-30T00:00:00Z\")"),
        Case(document: document(tenants: tenant(#", "validUntil": "2027-06-30""#)), path: "tenants.t.validUntil",
            message: "\"2027-06-30\" is not an RFC 3339 timestamp (e.g. \"2027-06-30T00:00:00Z\")"),
        Case(document: document(tenants: tenant(#", "validUntil": 1798761600"#)), path: "tenants.t.validUntil",
            message: "must be an RFC 3339 timestamp (a string such as \"2027-06-30T00:00:00Z\"), not an integer"),
        Case(document: document(tenants: tenant(#", "name": 5"#)), path: "tenants.t.name", message: "must be a string, not an integer"),
        Case(document: document(tenants: tenant(#", "overrides": []"#)), path: "tenants.t.overrides",
            message: "must be an object mapping feature keys to overrides, not an array"),
        Case(document: document(tenants: tenant(#", "overrides": {"f": true}"#)), path: "tenants.t.overrides.f",
            message: "an override must be an object with \"enabled\" (true or false), not a boolean"),
        Case(document: document(tenants: override(#""notes": "x""#)), path: "tenants.t.overrides.c",
            message: "missing \"enabled\": true turns the feature on for this tenant, false turns it off"),
        Case(document: document(tenants: override(#""enabled": "yes""#)), path: "tenants.t.overrides.c.enabled", message: "must be true or false, not a string"),
        Case(document: document(tenants: override(#""enabled": true, "config": {"n": 2}"#, feature: "f")), path: "tenants.t.overrides.f.config",
            message: "\"f\" is a boolean feature: an override cannot configure it (only a configuration feature, whose default is an object, takes a \"config\")"),
        Case(document: document(tenants: override(#""enabled": true, "config": 3"#)), path: "tenants.t.overrides.c.config",
            message: "must be an object (merged over the feature's default), not an integer"),
        Case(document: document(tenants: override(#""enabled": true, "by": 3"#)), path: "tenants.t.overrides.c.by", message: "must be a string, not an integer"),
        Case(document: document(tenants: override(#""enabled": true, "notes": null"#)), path: "tenants.t.overrides.c.notes", message: "must be a string, not a null"),
        Case(document: document(tenants: override(#""enabled": true, "at": "yesterday""#)), path: "tenants.t.overrides.c.at",
            message: "\"yesterday\" is not an RFC 3339 timestamp (e.g. \"2027-06-30T00:00:00Z\")"),
        Case(document: document(tenants: override(#""enabled": true, "expiresAt": "2027-01-01T25:00:00Z""#)), path: "tenants.t.overrides.c.expiresAt",
            message: "\"2027-01-01T25:00:00Z\" is not an RFC 3339 timestamp (e.g. \"2027-06-30T00:00:00Z\")"),
        Case(document: document(tenants: override(#""enabled": true, "at": "2027-01-02T00:00:00Z", "expiresAt": "2027-01-01T00:00:00+01:00""#)),
            path: "tenants.t.overrides.c.expiresAt",
            message: "2026-12-31T23:00:00Z is not after \"at\" (2027-01-02T00:00:00Z): the override would expire before it was made"),
        // Limits, wherever they are
        Case(document: document(features: #""f": {"description": "F", "default": false, "limits": {"per": "day"}}"#), path: "features.f.limits",
            message: "must be an array of limits, e.g. [{\"per\": \"day\", \"max\": 10}], not an object"),
        Case(document: document(plans: plan(#""f": {"limits": ["day"]}"#)), path: "plans.p.grants.f.limits[0]",
            message: "a limit must be an object such as {\"per\": \"day\", \"max\": 10}, not a string"),
        Case(document: document(plans: plan(#""f": {"limits": [{"max": 10}]}"#)), path: "plans.p.grants.f.limits[0]",
            message: "missing \"per\": one of \"minute\", \"hour\", \"day\", \"week\", \"month\""),
        Case(document: document(plans: plan(#""f": {"limits": [{"per": "days", "max": 10}]}"#)), path: "plans.p.grants.f.limits[0].per",
            message: "\"days\" is not one of \"minute\", \"hour\", \"day\", \"week\", \"month\"; did you mean \"day\"?"),
        Case(document: document(plans: plan(#""f": {"limits": [{"per": 1, "max": 10}]}"#)), path: "plans.p.grants.f.limits[0].per",
            message: "must be one of \"minute\", \"hour\", \"day\", \"week\", \"month\", not an integer"),
        Case(document: document(plans: plan(#""f": {"limits": [{"per": "day"}]}"#)), path: "plans.p.grants.f.limits[0]",
            message: "missing \"max\": the most a window allows (a positive integer)"),
        Case(document: document(plans: plan(#""f": {"limits": [{"per": "day", "max": 0}]}"#)), path: "plans.p.grants.f.limits[0].max",
            message: "must be a positive integer, not 0"),
        Case(document: document(plans: plan(#""f": {"limits": [{"per": "day", "max": 2.5}]}"#)), path: "plans.p.grants.f.limits[0].max",
            message: "must be a positive integer, not 2.5"),
        Case(document: document(plans: plan(#""f": {"limits": [{"per": "day", "max": "10"}]}"#)), path: "plans.p.grants.f.limits[0].max",
            message: "must be a positive integer, not a string"),
        Case(document: document(tenants: override(#""enabled": true, "limits": [{"per": "day", "max": 1, "scope": "team"}]"#)),
            path: "tenants.t.overrides.c.limits[0].scope", message: "\"team\" is not one of \"tenant\", \"user\""),
        Case(document: document(tenants: override(#""enabled": true, "limits": [{"per": "day", "max": 1, "mode": "strict"}]"#)),
            path: "tenants.t.overrides.c.limits[0].mode", message: "\"strict\" is not one of \"hard\", \"soft\", \"shadow\""),
        Case(document: document(tenants: override(#""enabled": true, "limits": [{"per": "day", "max": 1, "failMode": "closd"}]"#)),
            path: "tenants.t.overrides.c.limits[0].failMode", message: "\"closd\" is not one of \"open\", \"closed\"; did you mean \"closed\"?"),
        Case(document: document(features: #""f": {"description": "F", "default": false, "limits": [{"per": "day", "max": 5}, {"per": "month", "max": 50}, {"per": "day", "max": 9, "scope": "tenant"}]}"#),
            path: "features.f.limits[2]",
            message: "a second limit per day for scope \"tenant\" (the first is features.f.limits[0]); each window and scope may be limited once"),
    ]

    /// Rejected in strict mode; warnings in lenient mode, which ignores the reference or merges
    /// the configuration as written.
    static let strictOnly: [Case] = [
        Case(document: document(plans: plan(#""nope": true"#)), path: "plans.p.grants.nope", message: "no feature named \"nope\" in \"features\""),
        Case(document: document(plans: plan(#""ff": true"#)), path: "plans.p.grants.ff", message: "no feature named \"ff\" in \"features\"; did you mean \"f\"?"),
        Case(document: document(plans: #""p": {"order": 1, "inherits": "q"}"#), path: "plans.p.inherits",
            message: "no plan named \"q\" in \"plans\"; did you mean \"p\"?"),
        Case(document: document(tenants: #""t": {"plan": "gold", "status": "active"}"#), path: "tenants.t.plan", message: "no plan named \"gold\" in \"plans\""),
        Case(document: document(tenants: tenant(#", "overrides": {"g": {"enabled": true}}"#)), path: "tenants.t.overrides.g",
            message: "no feature named \"g\" in \"features\"; did you mean \"f\"?"),
        Case(document: document(plans: plan(#""c": {"config": {"m": 1}}"#)), path: "plans.p.grants.c.config.m",
            message: "\"m\" is not a member of the default configuration of \"c\" (it has \"n\", \"s\", \"o\", \"any\"); did you mean \"n\"?"),
        Case(document: document(plans: plan(#""c": {"config": {"n": "1"}}"#)), path: "plans.p.grants.c.config.n",
            message: "is a string, but \"n\" in the default configuration of \"c\" is a number"),
        Case(document: document(tenants: override(#""enabled": true, "config": {"o": {"k": 1}}"#)), path: "tenants.t.overrides.c.config.o.k",
            message: "is a number, but \"k\" in the default configuration of \"c\" is a boolean"),
    ]

    static let warnings: [Case] = [
        Case(document: document(extra: #", "metadata": {}"#), path: "metadata",
            message: "unknown member \"metadata\" is ignored (known: \"timezone\", \"features\", \"plans\", \"tenants\", \"$schema\")"),
        Case(document: document(features: #""f": {"default": true}"#), path: "features.f",
            message: "missing \"description\": say what the feature is (admin views and `guidon features` show it)"),
        Case(document: document(features: #""f": {"description": "F", "default": true, "owner": "x"}"#), path: "features.f.owner",
            message: "unknown member \"owner\" is ignored (a feature has \"description\", \"category\", \"default\", \"limits\")"),
        Case(document: document(plans: #""p": {"displayName": "P"}"#), path: "plans.p",
            message: "missing \"order\": plans are ranked by it (lowest first) to say which plan would grant a feature; this one ranks after every plan that has one"),
        Case(document: document(plans: #""p": {"order": 1, "price": 10}"#), path: "plans.p.price",
            message: "unknown member \"price\" is ignored (a plan has \"displayName\", \"order\", \"inherits\", \"grants\", \"description\")"),
        Case(document: document(plans: plan(#""f": {"granted": true, "note": "x"}"#)), path: "plans.p.grants.f.note",
            message: "unknown member \"note\" is ignored (a grant has \"granted\", \"config\", \"limits\")"),
        Case(document: document(plans: plan(#""c": {"granted": false, "config": {"n": 2}}"#)), path: "plans.p.grants.c.config",
            message: "is ignored: the grant is revoked (\"granted\": false)"),
        Case(document: document(plans: plan(#""f": false"#)), path: "plans.p.grants.f", message: "revokes nothing: plan \"p\" inherits no plan"),
        Case(document: document(plans: #""a": {"order": 1}, "p": {"order": 2, "inherits": "a", "grants": {"f": false}}"#), path: "plans.p.grants.f",
            message: "revokes nothing: plan \"p\" does not inherit a grant of \"f\""),
        Case(document: document(tenants: tenant(#", "tier": "gold""#)), path: "tenants.t.tier",
            message: "unknown member \"tier\" is ignored (a tenant has \"plan\", \"status\", \"validUntil\", \"overrides\", \"name\", \"notes\")"),
        Case(document: document(tenants: override(#""enabled": true, "reason": "x""#)), path: "tenants.t.overrides.c.reason",
            message: "unknown member \"reason\" is ignored (an override has \"enabled\", \"config\", \"limits\", \"notes\", \"by\", \"at\", \"expiresAt\")"),
        Case(document: document(tenants: override(#""enabled": false, "limits": []"#)), path: "tenants.t.overrides.c.limits",
            message: "is ignored: the override turns the feature off (\"enabled\": false)"),
        Case(document: document(plans: plan(#""f": {"limits": [{"per": "day", "max": 1, "window": "x"}]}"#)), path: "plans.p.grants.f.limits[0].window",
            message: "unknown member \"window\" is ignored (a limit has \"per\", \"max\", \"scope\", \"mode\", \"failMode\")"),
    ]

    func expectOne(_ diagnostics: [Diagnostic], _ c: Case, _ severity: Diagnostic.Severity, sourceLocation: SourceLocation = #_sourceLocation) {
        let matching = diagnostics.filter { $0.path == c.path }
        #expect(matching.count == 1, "\(diagnostics)", sourceLocation: sourceLocation)
        guard let d = matching.first else { return }
        #expect(d.message == c.message, sourceLocation: sourceLocation)
        #expect(d.severity == severity, sourceLocation: sourceLocation)
        #expect(d.line == 1 && d.column != nil, "no position for \(d)", sourceLocation: sourceLocation)
        // The column points at the problem: the value at the path (or the object missing a member).
        if let column = d.column, c.path != "$" {
            let text = Array(c.document.utf8)
            #expect(column >= 1 && column <= text.count, sourceLocation: sourceLocation)
        }
    }

    @Test(arguments: errors)
    func errorsRejectTheDocumentInBothModes(_ c: Case) {
        for mode in [CompileOptions.Mode.strict, .lenient] {
            let report = rejection(c.document, mode: mode)
            #expect(report.errors.count == 1, "\(mode): \(report)")
            expectOne(report.errors, c, .error)
        }
    }

    @Test(arguments: strictOnly)
    func strictRejectsWhatLenientIgnores(_ c: Case) throws {
        let report = rejection(c.document, mode: .strict)
        #expect(report.errors.count == 1, "\(report)")
        expectOne(report.errors, c, .error)
        let lenient = try compile(c.document, mode: .lenient)
        expectOne(lenient.warnings, c, .warning)
    }

    @Test(arguments: warnings)
    func warningsNeverReject(_ c: Case) throws {
        for mode in [CompileOptions.Mode.strict, .lenient] {
            let e = try compile(c.document, mode: mode)
            expectOne(e.warnings, c, .warning)
        }
    }

    @Test func syntaxErrorsAndDuplicateKeysHaveLineAndColumn() {
        let bad = rejection("{\n  \"features\": {\n    \"a\": {,}\n  }\n}")
        #expect(bad.errors.count == 1)
        #expect(bad.errors[0].path == "$")
        #expect(bad.errors[0].line == 3 && bad.errors[0].column == 11)
        let duplicate = rejection("{\"features\": {\"a\": {\"default\": true, \"default\": false}}}")
        #expect(duplicate.errors.first?.message == "duplicate key \"default\" in object")
        #expect(duplicate.errors.first?.line == 1 && duplicate.errors.first?.column == 38)
        // A duplicate inside a tenant, which is parsed on its own: still the document's position.
        let tenant = rejection("{\"features\": {}, \"plans\": {\"p\": {\"order\": 1}},\n\"tenants\": {\n \"t\": {\"plan\": \"p\", \"plan\": \"p\", \"status\": \"active\"}}}")
        #expect(tenant.errors.first?.message == "duplicate key \"plan\" in object")
        #expect(tenant.errors.first?.line == 3 && tenant.errors.first?.column == 21)
        // And a duplicate tenant.
        let twice = rejection(#"{"features": {}, "tenants": {"t": {"plan": "p", "status": "active"}, "t": {}}}"#)
        #expect(twice.errors.first?.message == "duplicate key \"t\" in object")
    }

    @Test func problemsArePositionedInMultiLineDocuments() {
        let document = """
            {
              "features": {"f": {"description": "F", "default": false}},
              "plans": {"p": {"displayName": "P", "order": 1}},
              "tenants": {
                "a": {"plan": "p", "status": "active"},
                "b": {"plan": "p", "status": "active",
                      "overrides": {"f": {"enabled": true,
                                          "expiresAt": "soon"}}},
                "c": {"plan": "p", "status": "paused"}
              }
            }
            """
        let report = rejection(document)
        #expect(report.errors.map(\.path) == ["tenants.b.overrides.f.expiresAt", "tenants.c.status"])
        #expect(report.errors.map(\.line) == [8, 9])
        #expect(report.errors.map(\.column) == [44, 34])
    }

    @Test func everyProblemIsReportedAtOnce() {
        let document = Self.document(
            features: #""f": {"description": "F", "default": "x"}, "c": {"description": "C", "default": {"n": 1}}"#,
            plans: #""p": {"order": 1, "grants": {"nope": true, "c": {"config": {"n": true}}}}"#,
            tenants: #""t1": {"plan": "q", "status": "active"}, "t2": {"plan": "p", "status": "x"}"#)
        let report = rejection(document)
        #expect(report.errors.map(\.path) == [
            "features.f.default", "plans.p.grants.nope", "plans.p.grants.c.config.n", "tenants.t1.plan", "tenants.t2.status",
        ])
        #expect(report.errors.allSatisfy { $0.line != nil && $0.column != nil })
    }

    @Test func aZoneCheckIsInjected() throws {
        let document = #"{"features": {}, "timezone": "Mars/Olympus"}"#
        // Without a zone database the name is only checked for its spelling.
        let spelled = try Entitlements.compile(json: Array(document.utf8))
        #expect(spelled.timezone == "Mars/Olympus")
        #expect(throws: ValidationReport.self) {
            try Entitlements.compile(json: Array(document.utf8), options: EntitlementsCompileOptions(isKnownTimeZone: { $0 == "UTC" }))
        }
        #expect(throws: ValidationReport.self) { try Entitlements.compile(json: Array(#"{"features": {}, "timezone": "not a zone"}"#.utf8)) }
        #expect(try compile(#"{"features": {}}"#).timezone == "UTC")
    }

    @Test func lenientModeIgnoresWhatItWarnsAbout() throws {
        let document = Self.document(
            plans: #""p": {"order": 1, "grants": {"f": true, "nope": true}}, "q": {"order": 2, "inherits": "gone", "grants": {"c": {"config": {"n": "2", "extra": 1}}}}"#,
            tenants: #""t": {"plan": "gold", "status": "active", "overrides": {"f": {"enabled": true}, "g": {"enabled": false}}}, "u": {"plan": "q", "status": "active"}"#)
        let e = try compile(document, mode: .lenient)
        #expect(e.warnings.count == 6, "\(e.warnings)")
        // The tenant of an unknown plan has no plan; its known override still applies.
        #expect(e.tenant("t")?.plan == nil)
        #expect(e.evaluate("f", tenant: "t", now: december15)?.variant == "override")
        #expect(e.evaluate("c", tenant: "t", now: december15)?.metadata == ["source": "default", "upgradeTo": "q"])
        // q inherits nothing, and its config is merged as written.
        #expect(e.evaluate("c", tenant: "u", now: december15)?.value == ["n": "2", "s": "x", "o": ["k": true], "any": nil, "extra": 1])
        #expect(e.evaluate("f", tenant: "u", now: december15)?.value == false)
    }
}

@Suite struct SizeLimitTests {
    /// A configuration merged into many overrides: refused once the answers' text passes the limit.
    @Test func answersThatWouldTakeTooMuchTextAreRefused() throws {
        let big = String(repeating: "x", count: 2000)
        var tenants: [String] = []
        for i in 0..<50 {
            tenants.append(#""t\#(i)": {"plan": "p", "status": "active", "overrides": {"c": {"enabled": true, "config": {"n": 2}}}}"#)
        }
        let document = #"{"features": {"c": {"description": "C", "default": {"s": "\#(big)", "n": 1}}}, "plans": {"p": {"order": 1, "grants": {"c": true}}}, "tenants": {\#(tenants.joined(separator: ","))}}"#
        var small = options()
        small.maximumAnswerBytes = 50_000
        do {
            _ = try Entitlements.compile(json: Array(document.utf8), options: small)
            Issue.record("accepted")
        } catch {
            #expect(error.errors.count == 1)
            #expect(error.errors.first?.message.hasPrefix("the answers this document defines would take more than 50000 bytes") == true)
            #expect(error.errors.first?.path.hasPrefix("tenants.t") == true)
        }
        // A catalog alone can pass it too.
        small.maximumAnswerBytes = 1000
        do {
            _ = try Entitlements.compile(json: Array(document.utf8), options: small)
            Issue.record("accepted")
        } catch {
            #expect(error.errors.first?.path == "plans")
        }
        // The default takes it.
        #expect(try Entitlements.compile(json: Array(document.utf8), options: options()).tenantCount == 50)
    }

    @Test func tooManyPlanFeaturePairsAreRefused() {
        let features = (0..<1000).map { #""f\#($0)": {"description": "F", "default": false}"# }.joined(separator: ",")
        let plans = (0..<1000).map { #""p\#($0)": {"order": \#($0)}"# }.joined(separator: ",")
        let report = rejection(#"{"features": {\#(features)}, "plans": {\#(plans)}}"#)
        #expect(report.errors.map(\.path) == ["plans"])
        #expect(report.errors.first?.message
            == "1000 plans and 1000 features make more than 1000000 plan–feature pairs, each answered in advance; per-customer terms belong in tenants' overrides")
    }
}
