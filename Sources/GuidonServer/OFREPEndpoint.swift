import GuidonEngine
import GuidonHTTP
public import GuidonJSON
import GuidonMetrics
import GuidonOFREP
import NIOCore
import NIOHTTP1

/// The served configuration is what OFREP evaluates against: the same functions as the query
/// socket's (`ServedConfig+Evaluation.swift`), through `CountingOFREPSource`, which passes them
/// the listener's counting directory.
extension ServedConfig {
    // Both files: a new entitlements version is a new bulk ETag even where the body did not change.
    public var revision: String { combinedVersion }
    public var flagSetMetadata: JSONObject { snapshot.metadata }
}

/// OFREP on the HTTP listener (`guidond --ofrep-listen`): the routes, which read a request
/// (`OFREPRequest`), answer it from the served configuration (`OFREPResponder`) and count it.
///
/// It answers on the listener's thread, from a configuration reference of its own (`LoopConfig`,
/// as an event loop keeps one) with counters of its own: OFREP's evaluations count in
/// `guidon_evaluations_total` and write exposure events like the query socket's, and the
/// listener's thread is their one writer, so the event loops' counters are not touched.
///
/// `@unchecked Sendable`: `config` and its counters are used on the HTTP listener's one thread
/// only (every route runs there; `refresh` is handed to it).
final class OFREPEndpoint: @unchecked Sendable {
    static let evaluateFlags = "/ofrep/v1/evaluate/flags"

    private let config: LoopConfig
    private let counters: Unmanaged<LoopCounters>?
    private let counting: Bool
    private let tracking: Bool
    private let requestCounts: CounterHandle?
    private let responseCounts: CounterHandle?

    init(store: ConfigStore, counters: LoopCounters?) {
        config = LoopConfig(store: store, counters: counters)
        self.counters = counters.map { Unmanaged.passUnretained($0) }
        counting = counters?.isCounting ?? false
        tracking = counters?.exposures != nil
        requestCounts = counting ? counters?.handle(MetricTable.ofrepRequests) : nil
        responseCounts = counting ? counters?.handle(MetricTable.ofrepResponses) : nil
    }

    /// Takes a newly published configuration at once (call on the listener's thread), so that
    /// the one before is freed even when no OFREP request comes.
    func refresh() { config.refresh() }

    var routes: HTTPRouter {
        var router = HTTPRouter()
        router.on(.POST, Self.evaluateFlags, sync: { [self] request in answer(.allFlags, request) })
        router.on(.POST, Self.evaluateFlags + "/{key...}", sync: { [self] request in
            answer(.flag(request.parameters["key"] ?? ""), request)
        })
        router.refusals(under: "/ofrep/") { [self] refusal, path in refuse(refusal, path: path) }
        return router
    }

    private func answer(_ target: OFREPRequest.Target, _ request: HTTPRequest) -> HTTPResponse {
        if case .flag = target { count(requestCounts, 0) } else { count(requestCounts, 1) }
        let body = request.body.map { Array($0.readableBytesView) } ?? []
        let parsed: OFREPRequest
        do throws(OFREPError) {
            parsed = try OFREPRequest(target: target, body: body, contentType: request.headers.first(name: "Content-Type"))
        } catch {
            return respond(OFREPResponder.response(for: error))
        }
        let (counters, counting, tracking) = (counters, counting, tracking)
        var response = config.withCurrent { served in
            let source = CountingOFREPSource(served: served, tenants: counters?._withUnsafeGuaranteedRef { $0.tenantDirectory })
            return OFREPResponder.respond(to: parsed, from: source) { result in
                Responder.observe(result, counters, counting, tracking)
            }
        }
        if tracking, let counters, counters._withUnsafeGuaranteedRef({ $0.hasPendingExposures }) {
            counters._withUnsafeGuaranteedRef {
                $0.recordNotedExposures(
                    targetingKey: parsed.context.targetingKey, tenant: { parsed.context.attributes["tenantId"]?.string })
            }
        }
        // Answered here rather than by the listener, so that it is counted as what it is.
        if let etag = response.etag, request.ifNoneMatch(matches: etag) {
            response = OFREPResponse(status: 304, body: [], etag: etag)
        }
        return respond(response)
    }

    /// The listener's own refusals under `/ofrep/`, worded as OFREP's `generalErrorResponse`.
    private func refuse(_ refusal: HTTPRouter.Refusal, path: String) -> HTTPResponse {
        let response: OFREPResponse
        switch refusal {
        case .notFound:
            count(requestCounts, 2)
            response = OFREPResponder.generalError(
                status: 404,
                details: "no OFREP resource at \(path): guidond serves POST \(Self.evaluateFlags)/{key} and POST \(Self.evaluateFlags) (OFREP v1); check the provider's base URL, which is http://HOST:PORT without a path")
        case .methodNotAllowed:
            count(requestCounts, 2)
            response = OFREPResponder.generalError(status: 405, details: "\(path): OFREP evaluates with POST")
        case .payloadTooLarge(let limit):
            response = OFREPResponder.generalError(
                status: 413, details: "the request body exceeds the limit of \(limit) bytes; the connection is closed")
        case .failed(let error):
            response = OFREPResponder.generalError(status: 500, details: "internal error: \(error)")
        }
        return respond(response)
    }

    private func respond(_ response: OFREPResponse) -> HTTPResponse {
        if let index = MetricTable.ofrepStatusCodes.firstIndex(of: response.status) { count(responseCounts, index) }
        var http = HTTPResponse(status: HTTPResponseStatus(statusCode: response.status), headers: [:], body: response.body)
        if response.status != 304 { http.headers.add(name: "Content-Type", value: OFREPResponse.contentType) }
        http.etag = response.etag
        return http
    }

    @inline(__always)
    private func count(_ handle: CounterHandle?, _ value: Int) {
        guard let handle, let counters else { return }
        counters._withUnsafeGuaranteedRef { $0.count(handle, value) }
    }
}
