/// Flag files (flagd format) the tests load, change and break.
enum FlagFiles {
    /// One string flag, `greeting`, serving `variant` ("hello" or "bye"), and optionally a second flag.
    static func greeting(_ variant: String, withExtraFlag: Bool = false) -> String {
        let extra = withExtraFlag
            ? #", "dark-mode": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}"#
            : ""
        return """
            {
              "$schema": "https://flagd.dev/schema/v0/flags.json",
              "flags": {
                "greeting": {
                  "state": "ENABLED",
                  "variants": {"hello": "hello", "bye": "bye"},
                  "defaultVariant": "\(variant)"
                }\(extra)
              }
            }
            """
    }

    /// Cut off mid-document: a reload must reject it and keep serving what it had.
    static let truncated = #"{"flags": {"greeting": {"state": "ENABLED", "variants": {"#

    static let ping = #"{"op":"ping"}"#
    static let evalGreeting = #"{"op":"eval","flag":"greeting","context":{"targetingKey":"user-1"}}"#
}
