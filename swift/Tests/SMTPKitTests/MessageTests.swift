// Message: the C composer's output as Python's email package reads it, the
// builder, and errors that name the field.
import Foundation
import XCTest

@testable import SMTPKit

final class MessageTests: XCTestCase {
    /// Parse `data` with Python's email package (policy.default) and
    /// return what it saw, as JSON.
    func parsedByPython(_ data: Data) throws -> [String: Any] {
        let python = ProcessInfo.processInfo.environment["SK_SWIFT_PYTHON"] ?? "/usr/bin/python3"
        let script = """
            import base64, email, email.policy, json, sys
            m = email.message_from_bytes(sys.stdin.buffer.read(), policy=email.policy.default)
            parts = []
            for p in m.walk():
                if p.is_multipart():
                    parts.append({"type": p.get_content_type()})
                    continue
                parts.append({"type": p.get_content_type(), "filename": p.get_filename(),
                              "cid": p.get("Content-ID"), "disposition": p.get_content_disposition(),
                              "payload": base64.b64encode(p.get_payload(decode=True)).decode()})
            print(json.dumps({"from": str(m["From"]), "to": str(m["To"]), "cc": str(m["Cc"]),
                              "bcc": m["Bcc"], "subject": str(m["Subject"]),
                              "list_id": str(m["List-Id"]), "message_id": str(m["Message-ID"]),
                              "defects": [str(d) for d in m.defects], "parts": parts}))
            """
        let proc = Process()
        proc.executableURL = URL(fileURLWithPath: python)
        proc.arguments = ["-c", script]
        let input = Pipe()
        let output = Pipe()
        proc.standardInput = input
        proc.standardOutput = output
        try proc.run()
        input.fileHandleForWriting.write(data)
        try input.fileHandleForWriting.close()
        let out = output.fileHandleForReading.readDataToEndOfFile()
        proc.waitUntilExit()
        XCTAssertEqual(proc.terminationStatus, 0)
        return try XCTUnwrap(JSONSerialization.jsonObject(with: out) as? [String: Any])
    }

    func testRenderedMessageAsPythonReadsIt() throws {
        let csv = Data("a,b\n1,2\n".utf8)
        let png = Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0xFF])
        let m = Message {
            From("Zoë Grün <zoe@example.org>")
            To("bob@example.net", "Ann <ann@example.net>")
            Cc("carol@example.net")
            Bcc("hidden@example.net")
            Subject("Grüße aus Köln")
            TextBody("Hallo Bob,\nsiehe Anhang.\n")
            HTMLBody("<p>Hallo <img src=\"cid:logo@example.org\"></p>")
            Attachment.data(csv, filename: "table.csv", contentType: "text/csv")
            Attachment.inline(.data(png, filename: "logo.png"), contentID: "logo@example.org",
                              contentType: "image/png")
            Header("List-Id", "Team <team.example.org>")
        }
        let data = try m.rendered()
        XCTAssertFalse(data.isEmpty)
        XCTAssertTrue(data.range(of: Data("\r\n".utf8)) != nil, "CRLF line ends")
        let p = try parsedByPython(data)
        XCTAssertEqual(p["from"] as? String, "Zoë Grün <zoe@example.org>")
        XCTAssertEqual(p["to"] as? String, "bob@example.net, Ann <ann@example.net>")
        XCTAssertEqual(p["cc"] as? String, "carol@example.net")
        XCTAssertTrue(p["bcc"] is NSNull, "Bcc is not rendered")
        XCTAssertEqual(p["subject"] as? String, "Grüße aus Köln")
        XCTAssertEqual(p["list_id"] as? String, "Team <team.example.org>")
        XCTAssertEqual((p["defects"] as? [Any])?.count, 0)
        let parts = try XCTUnwrap(p["parts"] as? [[String: Any]])
        let types = parts.compactMap { $0["type"] as? String }
        XCTAssertTrue(types.contains("multipart/mixed"), "\(types)")
        XCTAssertTrue(types.contains("multipart/alternative"), "\(types)")
        XCTAssertTrue(types.contains("multipart/related"), "\(types)")
        let text = try XCTUnwrap(parts.first { $0["type"] as? String == "text/plain" })
        XCTAssertEqual(Data(base64Encoded: text["payload"] as? String ?? ""),
                       Data("Hallo Bob,\r\nsiehe Anhang.\r\n".utf8))
        let att = try XCTUnwrap(parts.first { $0["filename"] as? String == "table.csv" })
        XCTAssertEqual(att["type"] as? String, "text/csv")
        XCTAssertEqual(att["disposition"] as? String, "attachment")
        XCTAssertEqual(Data(base64Encoded: att["payload"] as? String ?? ""), csv)
        let img = try XCTUnwrap(parts.first { $0["type"] as? String == "image/png" })
        XCTAssertEqual(img["cid"] as? String, "<logo@example.org>")
        XCTAssertEqual(Data(base64Encoded: img["payload"] as? String ?? ""), png)
        XCTAssertEqual(try m.envelopeRecipients(),
                       ["bob@example.net", "ann@example.net", "carol@example.net",
                        "hidden@example.net"])
    }

    /// One case for the C tests' oracle (tests/unit/mime_oracle.py): the
    /// message and what the oracle must find in its rendering.
    struct OracleCase {
        let message: Message
        /// [display name, addr-spec] of From, and of Sender and Reply-To.
        let from: [String]
        var sender: [String]? = nil
        var replyTo: [String]? = nil
        let to: [[String]]
        var cc: [[String]] = []
        var headers: [String: String] = [:]
        /// The top-level content type.
        let structure: String
        /// (file name, type, bytes) of each attachment, in order.
        var attachments: [(String, String, Data)] = []
        /// (Content-ID, file name, type, bytes) of each inline part.
        var inline: [(String, String, String, Data)] = []
    }

    /// The composer's output through the oracle the C composer's tests use
    /// (test_mime.c): every message parses without defects, and Python reads
    /// back the addresses, subject, bodies, attachments (bytes, names,
    /// types) and inline parts (Content-ID, inside multipart/related) that
    /// were put in, and the envelope recipients Python computes.
    func testComposerOutputPassesTheCTestsOracle() throws {
        let allBytes = Data((0...255).map { UInt8($0) })
        let png = Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0xFF])
        let dir = FileManager.default.temporaryDirectory
            .appendingPathComponent("smtpkit-swift-oracle-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let fileURL = dir.appendingPathComponent("notes.txt")
        try Data("from a file\r\n".utf8).write(to: fileURL)

        let cases: [OracleCase] = [
            OracleCase(message: Message(from: "a@example.org", to: ["b@example.org"],
                                        subject: "Text only", text: "Hello\n"),
                       from: ["", "a@example.org"], to: [["", "b@example.org"]],
                       structure: "text/plain"),
            OracleCase(message: Message {
                           From("a@example.org")
                           To("b@example.org")
                           Subject("Text and HTML")
                           TextBody("Plain\nand a last line without a line end")
                           HTMLBody("<p>Caf\u{e9} &amp; cr\u{e8}me</p>\n")
                       },
                       from: ["", "a@example.org"], to: [["", "b@example.org"]],
                       structure: "multipart/alternative"),
            OracleCase(message: Message {
                           From("a@example.org")
                           To("b@example.org")
                           Subject("Attachments")
                           TextBody("See the attachments.\n")
                           Attachment.data(allBytes, filename: "all-bytes.bin")
                           Attachment.data(allBytes.prefix(100), filename: "r\u{e9}sum\u{e9}.pdf")
                           Attachment.data(Data("a,b\r\n".utf8), filename: "my \"quoted\" report.csv",
                                           contentType: "text/x-custom")
                           Attachment.file(fileURL)
                       },
                       from: ["", "a@example.org"], to: [["", "b@example.org"]],
                       structure: "multipart/mixed",
                       attachments: [("all-bytes.bin", "application/octet-stream", allBytes),
                                     ("r\u{e9}sum\u{e9}.pdf", "application/pdf",
                                      allBytes.prefix(100)),
                                     ("my \"quoted\" report.csv", "text/x-custom",
                                      Data("a,b\r\n".utf8)),
                                     ("notes.txt", "text/plain", Data("from a file\r\n".utf8))]),
            OracleCase(message: Message {
                           From("Zo\u{eb} Gr\u{fc}n <zoe@example.org>")
                           To("bob@example.net", "Ann <ann@example.net>")
                           Cc("carol@example.net")
                           Subject("Inline images")
                           TextBody("Plain version\n")
                           HTMLBody("<p><img src=\"cid:logo@example.org\"> and "
                                    + "<img src=\"cid:chart@example.org\"></p>\n")
                           Attachment.inline(.data(png, filename: "logo.png"),
                                             contentID: "logo@example.org")
                           Attachment.inline(.data(allBytes, filename: "chart.gif"),
                                             contentID: "chart@example.org", contentType: "image/gif")
                           Attachment.data(Data(), filename: "empty.dat")
                       },
                       from: ["Zo\u{eb} Gr\u{fc}n", "zoe@example.org"],
                       to: [["", "bob@example.net"], ["Ann", "ann@example.net"]],
                       cc: [["", "carol@example.net"]], structure: "multipart/mixed",
                       attachments: [("empty.dat", "application/octet-stream", Data())],
                       inline: [("logo@example.org", "logo.png", "image/png", png),
                                ("chart@example.org", "chart.gif", "image/gif", allBytes)]),
            OracleCase(message: Message {
                           From("a@example.org")
                           To("b@example.org")
                           Subject("HTML only with an image")
                           HTMLBody("<p><img src=\"cid:logo@example.org\"></p>\n")
                           Attachment.inline(.file(fileURL), contentID: "logo@example.org",
                                             contentType: "image/png")
                       },
                       from: ["", "a@example.org"], to: [["", "b@example.org"]],
                       structure: "multipart/related",
                       inline: [("logo@example.org", "notes.txt", "image/png",
                                 Data("from a file\r\n".utf8))]),
            OracleCase(message: Message {
                           From("Info <info@example.org>")
                           Sender("Mailer <mailer@example.org>")
                           ReplyTo("Support Team <support@example.org>")
                           To("b@example.org")
                           Subject("Gr\u{fc}\u{df}e: headers")
                           TextBody("x\n")
                           Header("X-Campaign", "\u{c9}t\u{e9} 2024 \u{2014} summer")
                       },
                       from: ["Info", "info@example.org"],
                       sender: ["Mailer", "mailer@example.org"],
                       replyTo: ["Support Team", "support@example.org"],
                       to: [["", "b@example.org"]],
                       headers: ["X-Campaign": "\u{c9}t\u{e9} 2024 \u{2014} summer"],
                       structure: "text/plain"),
        ]

        var expected: [[String: Any]] = []
        var envelopes: [[String: Any]] = []
        for (i, c) in cases.enumerated() {
            let file = "case\(i).eml"
            try c.message.rendered().write(to: dir.appendingPathComponent(file))
            var e: [String: Any] = ["file": file, "structure": c.structure, "from": c.from,
                                    "to": c.to, "cc": c.cc, "headers": c.headers]
            e["subject"] = c.message.subject
            e["text"] = c.message.text.map { $0.replacingOccurrences(of: "\r\n", with: "\n") }
            e["html"] = c.message.html
            e["sender"] = c.sender
            e["reply_to"] = c.replyTo
            e["attachments"] = c.attachments.map {
                ["filename": $0.0, "type": $0.1, "data": $0.2.base64EncodedString()]
            }
            e["inline"] = c.inline.map {
                ["cid": $0.0, "filename": $0.1, "type": $0.2, "data": $0.3.base64EncodedString()]
            }
            expected.append(e)
            envelopes.append(["file": file, "reverse_path": (c.sender ?? c.from)[1],
                              "recipients": try c.message.envelopeRecipients()])
        }
        for (name, value) in [("expected.json", expected), ("envelopes.json", envelopes)] {
            try JSONSerialization.data(withJSONObject: value)
                .write(to: dir.appendingPathComponent(name))
        }

        let source = ProcessInfo.processInfo.environment["SK_SOURCE_DIR"].map {
            URL(fileURLWithPath: $0)
        } ?? URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let python = ProcessInfo.processInfo.environment["SK_SWIFT_PYTHON"] ?? "/usr/bin/python3"
        let proc = Process()
        proc.executableURL = URL(fileURLWithPath: python)
        proc.arguments = [source.appendingPathComponent("tests/unit/mime_oracle.py").path, dir.path]
        let output = Pipe()
        proc.standardError = output
        try proc.run()
        let out = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        proc.waitUntilExit()
        XCTAssertEqual(proc.terminationStatus, 0, out)
        XCTAssertTrue(out.contains("\(cases.count) messages, \(cases.count) envelopes, 0 failures"),
                      out)
    }

    func testFileAttachmentAndFixedID() throws {
        let dir = FileManager.default.temporaryDirectory
        let url = dir.appendingPathComponent("smtpkit-swift-\(getpid())-report.pdf")
        try Data("%PDF-1.4 test".utf8).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        var m = Message(from: "a@example.org", to: ["b@example.net"], subject: "s", text: "t\n")
        m.attachments = [.file(url)]
        m.messageID = "fixed.1@example.org"
        m.date = Date(timeIntervalSince1970: 1_700_000_000)
        let p = try parsedByPython(try m.rendered())
        XCTAssertEqual(p["message_id"] as? String, "<fixed.1@example.org>")
        let parts = try XCTUnwrap(p["parts"] as? [[String: Any]])
        let pdf = try XCTUnwrap(parts.first { $0["filename"] as? String == url.lastPathComponent })
        XCTAssertEqual(pdf["type"] as? String, "application/pdf", "type from the extension")
    }

    func testBuilderAndPropertiesMakeTheSameMessage() {
        let includeCc = true
        let built = Message {
            From("a@example.org")
            To("b@example.net")
            if includeCc { Cc("c@example.net") }
            for i in 1...2 { Header("X-Seq-\(i)", "\(i)") }
            Subject("s")
            TextBody("t\n")
        }
        var m = Message(from: "a@example.org", to: ["b@example.net"], subject: "s", text: "t\n")
        m.cc = ["c@example.net"]
        m.headers = [Header("X-Seq-1", "1"), Header("X-Seq-2", "2")]
        XCTAssertEqual(built, m)
    }

    func testInvalidInputNamesTheField() {
        func error(_ m: Message) -> MessageError? {
            do {
                _ = try m.rendered()
                return nil
            } catch {
                return error
            }
        }
        var m = Message(from: "a@example.org", to: ["b@example.net", "c@example.net\r\nBcc: x@y"])
        var e = error(m)
        XCTAssertEqual(e?.field, .to(1))
        XCTAssertEqual(e?.reason, .invalid)

        m = Message(from: "a@example.org", to: ["b@example.net"], subject: "hi\r\nX-Injected: 1")
        e = error(m)
        XCTAssertEqual(e?.field, .subject)
        XCTAssertEqual(e?.reason, .invalid)
        XCTAssertEqual(e.map { "\($0)" }?.hasPrefix("subject: "), true)

        m = Message(from: "a@example.org")
        m.cc = ["not an address"]
        e = error(m)
        XCTAssertEqual(e?.field, .cc(0))
        XCTAssertEqual(e?.reason, .syntax)

        m = Message(from: "a@@example.org", to: ["b@example.net"])
        XCTAssertEqual(error(m)?.field, .from)

        m = Message(to: ["b@example.net"], text: "no From\n")
        XCTAssertEqual(error(m)?.field, .from)

        m = Message(from: "a@example.org", to: ["b@example.net"])
        m.headers = [Header("Subject", "a second one")]
        XCTAssertEqual(error(m)?.field, .header("Subject"))

        m = Message(from: "a@example.org", to: ["b@example.net"])
        m.attachments = [.file(URL(fileURLWithPath: "/nonexistent/smtpkit-swift.bin"))]
        e = error(m)
        XCTAssertEqual(e?.field, .attachment(0))
        XCTAssertEqual(e?.reason, .notFound)
    }
}
