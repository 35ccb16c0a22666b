// swift-tools-version:6.0
// SMTPKit for Swift: the Swift layer (swift/Sources/SMTPKit) over the C
// library, whose client-side modules SwiftPM compiles from src/ itself
// (target CSMTPKit), so `swift build` needs nothing but this checkout and
// the Debian packages of scripts/deps.sh. docs/swift.md says why, and what
// an Apple platform needs.
import PackageDescription

// The modules of libsmtpkit a client needs (cmake/modules.cmake: client
// uses util, proto, mime, tls and sasl), without the server-side files:
// the daemon's password hashes (libcrypt) and TLS server contexts, and the
// worker threads (Linux eventfd), which nothing here uses.
let cSources = ["src/util", "src/proto", "src/mime", "src/tls", "src/sasl", "src/client"]
let cExcluded = ["src/util/worker.c", "src/tls/tls_server.c", "src/sasl/sasl_server.c"]

let package = Package(
    name: "SMTPKit",
    products: [
        .library(name: "SMTPKit", targets: ["SMTPKit"]),
        .executable(name: "smtpkit-swift-send", targets: ["SendExample"]),
    ],
    targets: [
        .target(
            name: "CSMTPKit",
            path: ".",
            exclude: cExcluded,
            sources: cSources,
            publicHeadersPath: "swift/CSMTPKit/include",
            cSettings: [
                .headerSearchPath("include"),
                .headerSearchPath("src"),
                // As CMakeLists.txt: glibc's extensions, and OpenSSL 3's API
                // only (its deprecated sk_free macro would collide with ours).
                .define("_GNU_SOURCE"),
                .define("OPENSSL_API_COMPAT", to: "30000"),
                .define("OPENSSL_NO_DEPRECATED"),
            ],
            linkerSettings: [
                .linkedLibrary("ssl"),
                .linkedLibrary("crypto"),
            ]
        ),
        .target(
            name: "SMTPKit",
            dependencies: ["CSMTPKit"],
            path: "swift/Sources/SMTPKit"
        ),
        .executableTarget(
            name: "SendExample",
            dependencies: ["SMTPKit"],
            path: "examples/swift/SendExample"
        ),
        .testTarget(
            name: "SMTPKitTests",
            dependencies: ["SMTPKit"],
            path: "swift/Tests/SMTPKitTests"
        ),
    ],
    swiftLanguageModes: [.v6],
    cLanguageStandard: .c17
)
