// swift-tools-version: 6.1
import PackageDescription

// Settings every target is built with: Swift 6 language mode (strict concurrency)
// plus the upcoming features that keep the public surfaces honest.
let strictSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "guidon",
    products: [
        .executable(name: "guidond", targets: ["guidond"]),
        .executable(name: "guidon", targets: ["guidon"]),
        .executable(name: "guidon-bench", targets: ["guidon-bench"]),
        .library(name: "GuidonEngine", targets: ["GuidonEngine"]),
        .library(name: "GuidonClient", targets: ["GuidonClient"]),
        .library(name: "GuidonQuota", targets: ["GuidonQuota"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-atomics", from: "1.3.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/x-sheep/swift-property-based", from: "2.0.1"),
    ],
    targets: [
        // JSON values, a position-reporting parser and a compact writer. No Foundation.
        .target(name: "GuidonJSON"),
        // Proleptic Gregorian calendar arithmetic (days ↔ civil dates, leap years, UTC date-time text). No I/O.
        .target(name: "GuidonCalendar"),
        // Reading documents, and replacing them atomically (temporary file, fsync, rename).
        .target(name: "GuidonFiles"),
        // Unix-domain socket addressing (sockaddr_un), shared by the daemon, the CLI, the bench.
        .target(name: "GuidonUnixSocket"),
        // The pure evaluation engine: flagd documents → validated, compiled, immutable snapshots.
        .target(name: "GuidonEngine", dependencies: ["GuidonJSON"]),
        // Entitlements: plans, tenants and overrides → validated, compiled tables; resolution. No I/O.
        .target(name: "GuidonEntitlements", dependencies: ["GuidonJSON", "GuidonEngine", "GuidonCalendar"]),
        // Edits of documents as bytes: operations on one flag (or on an entitlements document's
        // tenants, plans and features) that change only its text, validated by compiling the
        // result. No I/O.
        .target(name: "GuidonEditing", dependencies: ["GuidonJSON", "GuidonEngine", "GuidonEntitlements", "GuidonCalendar"]),
        // The NDJSON wire protocol: zero-copy request decoding and reply encoding. No I/O.
        .target(name: "GuidonProtocol", dependencies: ["GuidonJSON", "GuidonEngine", "GuidonEditing", "GuidonCalendar"]),
        // Per-loop counters merged when read, exposure-event queues, the Prometheus text. No I/O.
        .target(
            name: "GuidonMetrics",
            dependencies: [
                "GuidonJSON", "GuidonEngine", "GuidonEntitlements", "GuidonProtocol",
                .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ]
        ),
        // The HTTP listener (/metrics, /healthz; OFREP next) on NIOHTTP1, on threads of its own.
        .target(
            name: "GuidonHTTP",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ]
        ),
        // OFREP (the OpenFeature Remote Evaluation Protocol): requests read, results written. No I/O.
        .target(name: "GuidonOFREP", dependencies: ["GuidonJSON", "GuidonEngine"]),
        // A minimal Redis client: RESP2 encoding and parsing, pipelined connections with deadlines.
        .target(
            name: "GuidonRESP",
            dependencies: ["GuidonUnixSocket", "CLinux", .product(name: "NIOConcurrencyHelpers", package: "swift-nio")]
        ),
        // Usage limits: calendar windows in a time zone (pure), and the stores that count
        // (embedded, durable under a state directory; or shared through Redis).
        .target(
            name: "GuidonQuota",
            dependencies: [
                "GuidonRESP", "GuidonCalendar", "CLinux",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ]
        ),
        // libsystemd, through pkg-config.
        .systemLibrary(
            name: "CSystemd",
            pkgConfig: "libsystemd",
            providers: [.apt(["libsystemd-dev"])]
        ),
        // glibc's malloc tuning (mallopt, malloc_trim), not exported by the Glibc module.
        .systemLibrary(name: "CMalloc"),
        // epoll, eventfd, accept4, thread names and memmem, not exported by the Glibc module.
        .systemLibrary(name: "CLinux"),
        // sd_notify, socket activation, watchdog and a journald LogHandler.
        .target(
            name: "GuidonSystemd",
            dependencies: [
                "CSystemd",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The daemon: epoll event loops, snapshot store, reloads.
        .target(
            name: "GuidonServer",
            dependencies: [
                "GuidonJSON", "GuidonEngine", "GuidonEntitlements", "GuidonEditing", "GuidonFiles", "GuidonProtocol", "GuidonSystemd",
                "GuidonUnixSocket", "CMalloc", "CLinux", "GuidonMetrics", "GuidonHTTP", "GuidonOFREP", "GuidonQuota", "GuidonCalendar",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "guidond",
            dependencies: [
                "GuidonServer", "GuidonSystemd", "GuidonEntitlements", "GuidonFiles", "GuidonQuota",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "guidon",
            dependencies: [
                "GuidonJSON", "GuidonEngine", "GuidonEditing", "GuidonEntitlements", "GuidonFiles", "GuidonProtocol", "GuidonUnixSocket",
                "GuidonMetrics",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // The Swift client library: pooled, pipelined connections to guidond; `watch` as an AsyncSequence.
        .target(
            name: "GuidonClient",
            dependencies: [
                "GuidonJSON",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Counts heap allocations (interposes malloc & co.); linked only into guidon-bench.
        .target(name: "CAllocCounter"),
        .executableTarget(
            name: "guidon-bench",
            dependencies: [
                "GuidonJSON", "GuidonEngine", "GuidonProtocol", "GuidonUnixSocket", "CAllocCounter", "CLinux", "GuidonClient",
                "GuidonEntitlements", "CMalloc", "GuidonRESP", "GuidonQuota", "GuidonEditing",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .testTarget(name: "GuidonJSONTests", dependencies: ["GuidonJSON"]),
        .testTarget(name: "GuidonCalendarTests", dependencies: ["GuidonCalendar"]),
        .testTarget(name: "GuidonEditingTests", dependencies: ["GuidonJSON", "GuidonEngine", "GuidonEditing", "GuidonEntitlements"]),
        .testTarget(
            name: "GuidonEngineTests",
            dependencies: [
                "GuidonJSON", "GuidonEngine",
                .product(name: "PropertyBased", package: "swift-property-based"),
            ],
            resources: [.copy("Fixtures")]
        ),
        .testTarget(
            name: "GuidonEntitlementsTests",
            dependencies: [
                "GuidonJSON", "GuidonEngine", "GuidonEntitlements", "GuidonProtocol", "CAllocCounter",
                .product(name: "PropertyBased", package: "swift-property-based"),
            ]
        ),
        .testTarget(
            name: "GuidonProtocolTests",
            dependencies: ["GuidonJSON", "GuidonEngine", "GuidonProtocol", "CAllocCounter"]
        ),
        .testTarget(
            name: "GuidonServerTests",
            dependencies: [
                "GuidonJSON", "GuidonEngine", "GuidonEditing", "GuidonProtocol", "GuidonServer", "GuidonUnixSocket", "GuidonMetrics", "GuidonHTTP",
                "GuidonOFREP", "GuidonSystemd", "GuidonEntitlements",
            ]
        ),
        .testTarget(
            name: "GuidonMetricsTests",
            dependencies: ["GuidonJSON", "GuidonEngine", "GuidonProtocol", "GuidonMetrics"]
        ),
        .testTarget(
            name: "GuidonHTTPTests",
            dependencies: [
                "GuidonHTTP",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        .testTarget(name: "GuidonOFREPTests", dependencies: ["GuidonJSON", "GuidonEngine", "GuidonOFREP"]),
        .testTarget(name: "GuidonRESPTests", dependencies: ["GuidonRESP"]),
        .testTarget(
            name: "GuidonQuotaTests",
            dependencies: ["GuidonQuota", "GuidonRESP", .product(name: "Logging", package: "swift-log")]
        ),
        .testTarget(name: "GuidonSystemdTests", dependencies: ["GuidonSystemd", "GuidonUnixSocket"]),
        .testTarget(
            name: "GuidonClientTests",
            dependencies: [
                "GuidonClient", "GuidonJSON", "GuidonUnixSocket",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "GuidonBenchTests",
            dependencies: [
                "guidon-bench", "GuidonJSON",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ]
        ),
    ]
)

for target in package.targets where target.type != .system {
    target.swiftSettings = (target.swiftSettings ?? []) + strictSettings
}
