import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The optional HTTP sockets under a real systemd: guidon-metrics.socket and guidon-ofrep.socket
/// are bound by systemd and passed in, so that /metrics and OFREP answer while guidon.service keeps
/// its sandbox (no network of its own, AF_UNIX only, every IP address denied).
@Suite(
    "guidond's HTTP sockets under a namespaced systemd",
    .serialized,
    .enabled(if: TestEnvironment.canBootSystemd, "needs root and unshare(1) to boot systemd in private namespaces")
)
struct HTTPUnderSystemdTests {
    @Test("/metrics and OFREP answer through the socket units, which start the daemon, while the service stays sandboxed")
    func metricsAndOFREPThroughSocketUnits() async throws {
        let metricsPort = try freeLoopbackPort()
        let ofrepPort = try freeLoopbackPort()
        let installation = NamespacedSystemd.Installation.staged(
            config: FlagFiles.greeting("hello"),
            httpSockets: ["guidon-metrics.socket": metricsPort, "guidon-ofrep.socket": ofrepPort])
        try await NamespacedSystemd.with("http", installation) { systemd in
            #expect(try systemd.property("ActiveState", of: "guidon-metrics.socket") == "active")
            #expect(try systemd.property("ActiveState", of: "guidon-ofrep.socket") == "active")
            #expect(try systemd.property("ActiveState") == "inactive", "nothing runs before the first client")

            // An OFREP request is the first client: it starts the daemon, which answers it.
            let ofrep = try httpRequest(
                port: ofrepPort, "POST", "/ofrep/v1/evaluate/flags/greeting", body: #"{"context":{"targetingKey":"user-1"}}"#)
            #expect(ofrep.status == 200, "\(ofrep)")
            let answer = try jsonObject(ofrep.body)
            let socket = try LineClient.request(FlagFiles.evalGreeting, path: systemd.socketPath)
            #expect(answer["value"] as? String == "hello")
            #expect(answer["value"] as? String == socket["value"] as? String)
            #expect(answer["variant"] as? String == socket["variant"] as? String)
            #expect(answer["reason"] as? String == socket["reason"] as? String)
            #expect(try systemd.property("ActiveState") == "active")
            let missing = try httpRequest(port: ofrepPort, "POST", "/ofrep/v1/evaluate/flags/nope", body: "{}")
            #expect(missing.status == 404)

            let metrics = try httpRequest(port: metricsPort, "GET", "/metrics")
            #expect(metrics.status == 200)
            #expect(metrics.body.contains(#"guidon_ofrep_requests_total{endpoint="flag"} 2"#), "\(metrics.body.prefix(400))")
            #expect(metrics.body.contains(#"guidon_ofrep_responses_total{code="404"} 1"#))
            #expect(try httpRequest(port: metricsPort, "GET", "/healthz").status == 200)
            // Each socket serves what its name says.
            #expect(try httpRequest(port: metricsPort, "POST", "/ofrep/v1/evaluate/flags/greeting", body: "{}").status == 404)
            #expect(try httpRequest(port: ofrepPort, "GET", "/metrics").status == 404)

            // The sandbox is the shipped one: no network namespace of its own, no IP socket family,
            // every address denied; the service cannot create a TCP socket, it only accepts on systemd's.
            #expect(try systemd.property("PrivateNetwork") == "yes")
            #expect(try systemd.property("RestrictAddressFamilies") == "AF_UNIX")
            #expect(try systemd.property("IPAddressDeny").isEmpty == false)
            let messages = try systemd.journal().compactMap { $0["MESSAGE"] as? String }
            #expect(messages.contains { $0.hasPrefix(#"serving OFREP on the socket systemd passed as "ofrep""#) }, "\(messages)")
            #expect(messages.contains { $0.hasPrefix(#"serving /metrics and /healthz on the socket systemd passed as "metrics""#) })

            // After a restart the sockets are passed again.
            try systemd.systemctl("restart", "guidon.service")
            try await eventually("OFREP after a restart") {
                try httpRequest(port: ofrepPort, "POST", "/ofrep/v1/evaluate/flags/greeting", body: "{}").status == 200 ? true : nil
            }
        }
    }
}
