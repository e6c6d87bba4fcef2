// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "websocksy",
    products: [
        .executable(name: "websocksy", targets: ["websocksy"]),
        .executable(name: "websocksy-replay", targets: ["websocksy-replay"]),
        .library(name: "WebsocksyCore", targets: ["WebsocksyCore"]),
    ],
    targets: [
        // Linux APIs Glibc does not export to Swift (epoll, signalfd, accept4 flags) plus tiny inline helpers.
        .target(name: "CLinux", linkerSettings: [.linkedLibrary("crypt")]),
        .systemLibrary(name: "CNettle", pkgConfig: "nettle", providers: [.apt(["nettle-dev"])]),
        .systemLibrary(name: "CGnuTLS", pkgConfig: "gnutls", providers: [.apt(["libgnutls28-dev"])]),
        // permessage-deflate (RFC 7692).
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        // The public plugin ABI (websocksy.h): the one header third-party plugins compile against.
        .target(name: "CWebsocksy"),
        .target(
            name: "WebsocksyCore",
            dependencies: ["CLinux", "CNettle", "CGnuTLS", "CZlib", "CWebsocksy"],
            // Dynamic exclusivity checks cost a fifth of the instructions per relayed message (a
            // thread-local access set updated on every buffer mutation). Release builds rely on
            // the debug build, which keeps the checks and runs the whole integration suite under
            // `make test-asan`, to catch an overlapping access.
            swiftSettings: [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]
        ),
        .executableTarget(
            name: "websocksy",
            dependencies: ["WebsocksyCore"],
            // Plugins loaded with dlopen resolve core_register_framing/core_framing against the executable.
            linkerSettings: [.unsafeFlags(["-Xlinker", "--export-dynamic"])]
        ),
        // Reads session recordings (`record = DIR`): lists records, extracts one direction's bytes.
        .executableTarget(name: "websocksy-replay", dependencies: ["WebsocksyCore"]),
        .testTarget(name: "WebsocksyCoreTests", dependencies: ["WebsocksyCore"]),
    ]
)
