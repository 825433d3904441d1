import GuidonJSON

// PLACEHOLDER: a minimal compiler that only understands flags without targeting.
// To be replaced by the full validating compiler.

struct CompiledFlag: Sendable {
    let key: String
    let enabled: Bool
    let variantNames: [String]
    let variantValues: [JSONValue]
    let defaultIndex: Int?
    let metadata: JSONObject

    func evaluate(context: EvaluationContext, type: ValueType?, now: Int64) -> EvaluationResult {
        guard enabled else {
            return EvaluationResult(flagKey: key, value: nil, variant: nil, reason: .disabled, metadata: metadata)
        }
        guard let d = defaultIndex else {
            return EvaluationResult(flagKey: key, value: nil, variant: nil, reason: .default, metadata: metadata)
        }
        return EvaluationResult(flagKey: key, value: variantValues[d], variant: variantNames[d], reason: .static, metadata: metadata)
    }
}

struct Compiler {
    let options: CompileOptions

    func compile(_ bytes: [UInt8]) throws(ValidationReport) -> Snapshot {
        let root: JSONValue
        do {
            root = try JSONParser(duplicateKeys: .reject).parse(bytes)
        } catch {
            throw ValidationReport(errors: [Diagnostic(severity: .error, path: "$", line: error.line, column: error.column, message: error.reason)])
        }
        guard case .object(let doc) = root, case .object(let flags)? = doc["flags"] else {
            throw ValidationReport(errors: [Diagnostic(severity: .error, path: "$", message: "missing 'flags' object")])
        }
        let setMetadata = doc["metadata"]?.object ?? JSONObject()
        var compiled: [CompiledFlag] = []
        var infos: [FlagInfo] = []
        for (key, value) in flags {
            let flag = value.object ?? JSONObject()
            let variants = flag["variants"]?.object ?? JSONObject()
            var metadata = setMetadata
            for (k, v) in flag["metadata"]?.object ?? JSONObject() { metadata[k] = v }
            let defaultName = flag["defaultVariant"]?.string
            let defaultIndex = defaultName.flatMap { variants.keys.firstIndex(of: $0) }
            let enabled = flag["state"]?.string != "DISABLED"
            compiled.append(CompiledFlag(
                key: key, enabled: enabled, variantNames: variants.keys, variantValues: variants.values,
                defaultIndex: defaultIndex, metadata: metadata))
            var hasher = Hasher()
            hasher.combine(value)
            infos.append(FlagInfo(
                key: key, state: enabled ? .enabled : .disabled, variants: variants.keys,
                defaultVariant: defaultName, metadata: metadata, hasTargeting: false,
                fingerprint: UInt64(bitPattern: Int64(hasher.finalize()))))
        }
        return Snapshot(flags: compiled, infos: infos, metadata: setMetadata, warnings: [], clock: options.clock)
    }
}
