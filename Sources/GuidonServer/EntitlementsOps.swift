import GuidonEntitlements
import GuidonJSON
import GuidonProtocol

/// The query socket's views of the entitlements file: `{"op":"entitlements","tenant":T}` (every
/// feature for one tenant, with its value, source and why) and `{"op":"tenants",…}` (a page of
/// the tenant listing). Both read the `ServedConfig` the request is answered from; neither is on
/// the evaluation path (an `entitlements` reply writes 30 features' text, a few µs).
enum EntitlementsOps {
    /// Answers `request` (an `entitlements` or `tenants` op) from `config` into `out`, or says
    /// what is wrong with it.
    static func answer(_ request: Request, config: ServedConfig, into out: inout [UInt8]) throws(RequestError) {
        let id = request.id
        func invalid(_ message: String) -> RequestError { RequestError(code: .invalidRequest, message: message, id: id) }
        guard let entitlements = config.entitlements else {
            throw RequestError(
                code: .notFound,
                message: "\(request.op.rawValue): this guidond serves no entitlements file (start it with --entitlements PATH)", id: id)
        }
        let extras = request.extras ?? JSONObject()
        let allowed: Set<String> = request.op == .entitlements ? ["tenant"] : ["after", "limit", "plan", "status"]
        for (name, _) in extras where !allowed.contains(name) {
            throw invalid("unknown member \"\(name)\" in \(request.op.rawValue); it takes \(allowed.sorted().map { "\"\($0)\"" }.joined(separator: ", "))")
        }
        switch request.op {
        case .entitlements:
            guard let value = extras["tenant"] else {
                throw invalid("entitlements needs \"tenant\": the tenant's id (a string, or an integer for a numeric id)")
            }
            guard let tenant = Entitlements.tenantID(from: value) else {
                throw invalid("\"tenant\" must be a string or an integer, not \(describe(value))")
            }
            ReplyEncoder.members(id: id, into: &out) { entitlements.writeEntitlements(tenant: tenant, into: &$0) }
        default:
            var query = TenantQuery()
            switch extras["after"] {
            case nil, .null?: break
            case .string(let after)?: query.after = after
            case .int(let n)?: query.after = String(n)
            case let other?: throw invalid("\"after\" must be a tenant id (the previous page's \"next\"), not \(describe(other))")
            }
            switch extras["limit"] {
            case nil, .null?: break
            case .int(let n)?:
                guard (1...Int64(TenantQuery.maximumLimit)).contains(n) else {
                    throw invalid("\"limit\" must be between 1 and \(TenantQuery.maximumLimit), not \(n)")
                }
                query.limit = Int(n)
            case let other?: throw invalid("\"limit\" must be an integer from 1 to \(TenantQuery.maximumLimit), not \(describe(other))")
            }
            switch extras["plan"] {
            case nil, .null?: break
            case .string(let plan)?: query.plan = plan
            case let other?: throw invalid("\"plan\" must be a plan's name, not \(describe(other))")
            }
            switch extras["status"] {
            case nil, .null?: break
            case .string(let name)?:
                guard let status = SubscriptionStatus(rawValue: name) else {
                    throw invalid("\"\(name)\" is not a status; use one of \(SubscriptionStatus.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", "))")
                }
                query.status = status
            case let other?: throw invalid("\"status\" must be a subscription status (a string), not \(describe(other))")
            }
            var body: [UInt8] = []
            do {
                try entitlements.writeTenants(query, into: &body)
            } catch {
                throw RequestError(code: .invalidRequest, message: error.message, id: id, details: ["reason": .string(error.code.description)])
            }
            ReplyEncoder.members(id: id, into: &out) { $0.append(contentsOf: body) }
        }
    }

    private static func describe(_ value: JSONValue) -> String {
        switch value {
        case .string(let s): "the string \"\(s)\""
        case .null: "null"
        default: "\(["object", "array", "integer"].contains(value.typeName) ? "an" : "a") \(value.typeName)"
        }
    }
}
