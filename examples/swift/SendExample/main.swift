// smtpkit-swift-send: send a message with an attachment from Swift.
//
//   swift run smtpkit-swift-send --server HOST[:PORT] --from ADDR --to ADDR \
//       --attach FILE [--tls starttls|implicit|none] [--ca-file PEM] \
//       [--user USER] [--subject TEXT]
//
// The password is read from SMTPKIT_PASSWORD. Exit codes follow
// sysexits.h as `smtpkit send`'s do (64 usage, 65 data, 69 permanent,
// 75 temporary, 76 protocol or TLS, 77 authentication, 78 configuration).
import Foundation
import SMTPKit

func usage(_ why: String) -> Never {
    FileHandle.standardError.write(Data("""
        smtpkit-swift-send: \(why)
        usage: smtpkit-swift-send --server HOST[:PORT] --from ADDR --to ADDR --attach FILE
               [--tls starttls|implicit|none] [--ca-file PEM] [--user USER] [--subject TEXT]

        """.utf8))
    exit(64)
}

var opts: [String: String] = [:]
var args = CommandLine.arguments.dropFirst()
while let flag = args.popFirst() {
    guard ["--server", "--from", "--to", "--attach", "--tls", "--ca-file", "--user",
           "--subject"].contains(flag)
    else { usage("unknown argument \(flag)") }
    guard let value = args.popFirst() else { usage("\(flag) needs a value") }
    opts[flag] = value
}
for required in ["--server", "--from", "--to", "--attach"] where opts[required] == nil {
    usage("\(required) is required")
}

// HOST[:PORT], [IPv6]:PORT
var host = opts["--server"]!
var port: Int?
if let colon = host.lastIndex(of: ":"), !host.hasSuffix("]"),
   host.first == "[" || host.firstIndex(of: ":") == colon
{
    guard let p = Int(host[host.index(after: colon)...]), (1...65535).contains(p) else {
        usage("--server: bad port in \(host)")
    }
    port = p
    host = String(host[..<colon])
}
host = host.trimmingCharacters(in: CharacterSet(charactersIn: "[]"))

var security: Security?
switch opts["--tls"] {
case nil: security = nil
case "starttls": security = .startTLS
case "implicit": security = .implicitTLS
case "none": security = Security.none
case let other?: usage("--tls: \(other) is not starttls, implicit or none")
}

var credentials: Credentials?
if let user = opts["--user"] {
    guard let pw = ProcessInfo.processInfo.environment["SMTPKIT_PASSWORD"] else {
        usage("--user needs the password in SMTPKIT_PASSWORD")
    }
    credentials = .password(user: user, password: pw)
}

let attachment = URL(fileURLWithPath: opts["--attach"]!)
let message = Message {
    From(opts["--from"]!)
    To(opts["--to"]!)
    Subject(opts["--subject"] ?? attachment.lastPathComponent)
    TextBody("Attached: \(attachment.lastPathComponent)\n")
    Attachment.file(attachment)
}

let client = SMTPClient(
    host: host, port: port, security: security,
    verification: opts["--ca-file"].map { .caFile(URL(fileURLWithPath: $0)) } ?? .system,
    credentials: credentials)

do {
    let result = try await client.send(message)
    for r in result.refused { print("refused: \(r.address): \(r.reply)") }
    print("sent: \(result.reply)")
} catch let e as MessageError {
    FileHandle.standardError.write(Data("smtpkit-swift-send: \(e)\n".utf8))
    exit(65)
} catch let e as SMTPError {
    FileHandle.standardError.write(Data(e.description.utf8))
    switch e.kind {
    case .permanentFailure: exit(69)
    case .authentication: exit(77)
    case .configuration: exit(78)
    case .notSMTP, .tls, .certificate, .unsupported: exit(76)
    case .invalidInput: exit(65)
    default: exit(75)
    }
}
