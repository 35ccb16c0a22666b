// SMTPClient and Probe against the peers tests/integration/test_swift.py
// starts (their ports come by environment; without them these tests are
// skipped, and the driver fails a run that skips any).
import Foundation
import XCTest

@testable import SMTPKit

/// The lines a transcript hook received, for checks after the fact.
final class Lines: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [TranscriptLine] = []
    func add(_ l: TranscriptLine) { lock.withLock { lines.append(l) } }
    var all: [TranscriptLine] { lock.withLock { lines } }
    var text: String { all.map(\.description).joined(separator: "\n") }
}

final class ClientTests: XCTestCase {
    let env = ProcessInfo.processInfo.environment

    func port(_ name: String) throws -> Int {
        guard let v = env["SK_SWIFT_\(name)_PORT"], let p = Int(v) else {
            throw XCTSkip("no SK_SWIFT_\(name)_PORT: run through tests/integration/test_swift.py")
        }
        return p
    }

    var ca: CertificateVerification {
        get throws {
            guard let v = env["SK_SWIFT_CA"] else { throw XCTSkip("no SK_SWIFT_CA") }
            return .caFile(URL(fileURLWithPath: v))
        }
    }

    var password: Credentials {
        .password(user: env["SK_SWIFT_USER"] ?? "", password: env["SK_SWIFT_PASSWORD"] ?? "")
    }

    /// A configuration for 127.0.0.1 (certificates name it) with short
    /// bounds, so that a failure shows quickly.
    func config(_ port: Int, _ security: Security, _ v: CertificateVerification = .system)
        -> SMTPClient.Configuration
    {
        SMTPClient.Configuration(host: "127.0.0.1", port: port, security: security,
                                 verification: v, timeouts: .all(.seconds(20)),
                                 heloName: "client.test")
    }

    func message(_ subject: String, to: [String] = ["bob@example.net"]) -> Message {
        Message(from: "Zoë <zoe@example.org>", to: to, subject: subject, text: "Hello\n")
    }

    func testPlainWithARefusedRecipientAndTranscript() async throws {
        let lines = Lines()
        var cfg = config(try port("PLAIN"), .none)
        cfg.transcript = { lines.add($0) }
        let r = try await SMTPClient(cfg).send(
            message("plain", to: ["bob@example.net", "nobody@example.net"]))
        XCTAssertEqual(r.accepted.map(\.address), ["bob@example.net"])
        XCTAssertEqual(r.refused.map(\.address), ["nobody@example.net"])
        XCTAssertEqual(r.refused.first?.reply.code, 550)
        XCTAssertEqual(r.refused.first?.reply.enhancedStatus, "5.1.1")
        XCTAssertEqual(r.reply.code, 250)
        XCTAssertEqual(r.queueID, "SKTEST42")
        let t = lines.text
        XCTAssertTrue(t.contains("C: MAIL FROM:<zoe@example.org>"), t)
        XCTAssertTrue(t.contains("S: 250"), t)
        XCTAssertTrue(lines.all.contains { $0.direction == .info }, t)
        XCTAssertFalse(t.contains("Hello"), "the message's content is not in the transcript")
    }

    /// Keeps an error's description for the driver, which compares it with
    /// what `smtpkit send` prints for the same failure.
    func keep(_ e: SMTPError, as name: String) throws {
        guard let dir = env["SK_SWIFT_TMP"] else { return }
        try Data(e.description.utf8).write(to: URL(fileURLWithPath: dir)
            .appendingPathComponent("\(name).txt"))
    }

    func testAllRecipientsRefusedThrowsWithResults() async throws {
        let client = SMTPClient(config(try port("PLAIN"), .none))
        do {
            _ = try await client.send(message("refused", to: ["nobody@example.net"]))
            XCTFail("sent")
        } catch let e as SMTPError {
            XCTAssertEqual(e.step, .rcpt)
            XCTAssertEqual(e.kind, .permanentFailure)
            XCTAssertEqual(e.code, 550)
            XCTAssertFalse(e.isTransient)
            XCTAssertEqual(e.recipients.map(\.accepted), [false])
            try keep(e, as: "refused")
            XCTAssertTrue(e.description.contains("  step:   RCPT\n"), e.description)
            XCTAssertTrue(e.description.contains("  reply:  550 5.1.1 no such user here\n"),
                          e.description)
        }
    }

    /// Two messages over one session; the peer (its own, so that nothing
    /// else connects to it) counts the connections: the driver checks it
    /// saw one, with both messages.
    func testSessionReusesOneConnection() async throws {
        let lines = Lines()
        var cfg = config(try port("SESSION"), .none)
        cfg.transcript = { lines.add($0) }
        let results = try await SMTPClient(cfg).withSession { s in
            [try await s.send(message("session message 1")),
             try await s.send(message("session message 2"))]
        }
        XCTAssertEqual(results.map(\.reply.code), [250, 250])
        XCTAssertEqual(lines.all.filter { $0.text.hasPrefix("EHLO") }.count, 1, lines.text)
    }

    /// What the transcript shows of an AUTH exchange: the command, and the
    /// credentials masked (PLAIN: one line; LOGIN: user and password lines);
    /// neither the password nor the user name, plain or base64, appear.
    func checkAuthMasked(_ lines: Lines, _ mech: String, secret: String,
                         file: StaticString = #filePath, line: UInt = #line)
    {
        let t = lines.text
        let client = lines.all.filter { $0.direction == .client }.map(\.text)
        let user = env["SK_SWIFT_USER"] ?? "-"
        switch mech {
        case "PLAIN":
            XCTAssertTrue(client.contains("AUTH PLAIN ****"), t, file: file, line: line)
            XCTAssertFalse(t.contains(Data("\0\(user)\0\(secret)".utf8).base64EncodedString()),
                           t, file: file, line: line)
        case "LOGIN":
            let i = try? XCTUnwrap(client.firstIndex(of: "AUTH LOGIN"), t, file: file, line: line)
            if let i {
                XCTAssertEqual(Array(client[(i + 1)...].prefix(2)), ["****", "****"], t,
                               file: file, line: line)
            }
            XCTAssertFalse(t.contains(Data(user.utf8).base64EncodedString()), t,
                           file: file, line: line)
        default:
            XCTAssertTrue(client.contains("AUTH \(mech) ****"), t, file: file, line: line)
        }
        XCTAssertFalse(t.contains(secret), "secret not in the transcript", file: file, line: line)
        XCTAssertFalse(t.contains(Data(secret.utf8).base64EncodedString()), "nor in base64",
                       file: file, line: line)
    }

    func testStartTLSWithAuthPlainAndLogin() async throws {
        for mech in ["PLAIN", "LOGIN"] {
            let lines = Lines()
            var cfg = config(try port("STARTTLS"), .startTLS, try ca)
            cfg.credentials = password
            cfg.authenticationMechanism = mech
            cfg.transcript = { lines.add($0) }
            let r = try await SMTPClient(cfg).send(message("starttls \(mech)"))
            XCTAssertEqual(r.reply.code, 250)
            XCTAssertTrue(lines.text.contains("C: STARTTLS"), lines.text)
            checkAuthMasked(lines, mech, secret: env["SK_SWIFT_PASSWORD"] ?? "-")
        }
    }

    /// AUTH over implicit TLS (port 465 style), to `smtpkit serve`'s smtps
    /// listener with a --users file: the driver checks serve logged both
    /// mechanisms and delivered both messages.
    func testImplicitTLSWithAuthPlainAndLoginToServe() async throws {
        for mech in ["PLAIN", "LOGIN"] {
            let lines = Lines()
            var cfg = config(try port("SERVE_SMTPS"), .implicitTLS, try ca)
            cfg.credentials = password
            cfg.authenticationMechanism = mech
            cfg.transcript = { lines.add($0) }
            let r = try await SMTPClient(cfg).send(
                Message(from: "zoe@example.org", to: ["dave@example.test"],
                        subject: "implicit TLS AUTH \(mech)", text: "hi\n"))
            XCTAssertEqual(r.reply.code, 250)
            XCTAssertNotNil(r.queueID)
            XCTAssertFalse(lines.text.contains("STARTTLS"), lines.text)
            XCTAssertTrue(lines.all.contains { $0.direction == .server && $0.text.hasPrefix("235") },
                          lines.text)
            checkAuthMasked(lines, mech, secret: env["SK_SWIFT_PASSWORD"] ?? "-")
        }
    }

    /// An OAuth2 bearer token (XOAUTH2, the strongest the peer offers).
    func testOAuth2Token() async throws {
        let lines = Lines()
        let token = try XCTUnwrap(env["SK_SWIFT_TOKEN"])
        var cfg = config(try port("STARTTLS"), .startTLS, try ca)
        cfg.credentials = .oauth2(user: env["SK_SWIFT_USER"] ?? "", token: token)
        cfg.transcript = { lines.add($0) }
        let r = try await SMTPClient(cfg).send(message("oauth2"))
        XCTAssertEqual(r.reply.code, 250)
        checkAuthMasked(lines, "XOAUTH2", secret: token)
    }

    /// The certificate is verified against the system store unless another
    /// CA is named; `.insecure` skips that only when asked.
    func testVerificationIsOnUnlessInsecureIsAsked() async throws {
        XCTAssertEqual(SMTPClient.Configuration(host: "h").verification, .system)
        XCTAssertNil(SMTPClient.Configuration(host: "h").security, "STARTTLS required")
        do {
            _ = try await SMTPClient(config(try port("SERVE"), .startTLS)).send(
                Message(from: "zoe@example.org", to: ["bob@example.test"], subject: "untrusted"))
            XCTFail("sent with a certificate the system does not trust")
        } catch let e as SMTPError {
            XCTAssertEqual(e.step, .tls)
            XCTAssertEqual(e.kind, .certificate)
        }
        let r = try await SMTPClient(config(try port("SERVE"), .startTLS, .insecure)).send(
            Message(from: "zoe@example.org", to: ["bob@example.test"], subject: "insecure asked",
                    text: "hi\n"))
        XCTAssertEqual(r.reply.code, 250)
    }

    func testImplicitTLS() async throws {
        // (aiosmtpd offers AUTH only after its own STARTTLS, not over
        // implicit TLS: AUTH over implicit TLS goes to smtpkit serve, below.)
        let cfg = config(try port("IMPLICIT"), .implicitTLS, try ca)
        let r = try await SMTPClient(cfg).send(message("implicit"))
        XCTAssertEqual(r.reply.code, 250)
    }

    func testWrongPassword() async throws {
        var cfg = config(try port("STARTTLS"), .startTLS, try ca)
        cfg.credentials = .password(user: "zoe", password: "not the password")
        do {
            _ = try await SMTPClient(cfg).send(message("wrong password"))
            XCTFail("sent")
        } catch let e as SMTPError {
            XCTAssertEqual(e.step, .auth)
            XCTAssertEqual(e.kind, .authentication)
            XCTAssertEqual(e.code, 535)
            XCTAssertNotNil(e.hint)
            XCTAssertTrue(e.description.contains("  step:   AUTH\n"), e.description)
            XCTAssertTrue(e.description.contains("  hint:   "), e.description)
            XCTAssertFalse(e.description.contains("not the password"))
            try keep(e, as: "wrong-password")
        }
    }

    func testCertificateForAnotherName() async throws {
        let cfg = config(try port("WRONGNAME"), .startTLS, try ca)
        do {
            _ = try await SMTPClient(cfg).send(message("wrong name"))
            XCTFail("sent")
        } catch let e as SMTPError {
            XCTAssertEqual(e.step, .tls)
            XCTAssertEqual(e.kind, .certificate)
        }
    }

    func testServerThatNeverAnswersTimesOut() async throws {
        var cfg = config(try port("SILENT"), .none)
        cfg.timeouts = Timeouts(connect: .seconds(5), greeting: .seconds(1))
        let start = ContinuousClock.now
        do {
            _ = try await SMTPClient(cfg).send(message("silent"))
            XCTFail("sent")
        } catch let e as SMTPError {
            XCTAssertEqual(e.kind, .timeout)
            XCTAssertEqual(e.step, .greeting)
            XCTAssertTrue(e.isTransient)
        }
        XCTAssertLessThan(ContinuousClock.now - start, .seconds(15))
    }

    /// A port that accepts and never speaks, even when spoken to: the
    /// error's hint is `smtpkit send`'s, naming this package's settings.
    func testSilentPortErrorHintNamesSwiftSettings() async throws {
        var cfg = config(try port("SILENT"), .none)
        cfg.timeouts = Timeouts(connect: .seconds(5), greeting: .seconds(4))
        do {
            _ = try await SMTPClient(cfg).send(message("silent, identified"))
            XCTFail("sent")
        } catch let e as SMTPError {
            XCTAssertEqual(e.kind, .timeout)
            XCTAssertEqual(e.step, .greeting)
            let want = "the server accepted the connection but said nothing, not even to a TLS "
                + "or an HTTP hello: check the host and port in host/port, or raise timeouts for "
                + "a slow server"
            XCTAssertEqual(e.hint, want)
            XCTAssertTrue(e.description.hasSuffix("  hint:   \(want)\n"), e.description)
        }
    }

    /// STARTTLS asked of a port that speaks TLS from the first byte: found
    /// out after 1 s, and the hint names `security: .implicitTLS`.
    func testTLSFirstPortErrorHintNamesSwiftSettings() async throws {
        var cfg = config(try port("IMPLICIT"), .startTLS, try ca)
        cfg.timeouts = Timeouts(connect: .seconds(5), greeting: .seconds(20))
        let start = ContinuousClock.now
        do {
            _ = try await SMTPClient(cfg).send(message("TLS-first port"))
            XCTFail("sent")
        } catch let e as SMTPError {
            XCTAssertEqual(e.kind, .notSMTP)
            XCTAssertEqual(e.step, .greeting)
            XCTAssertEqual(e.hint, "this port speaks TLS first: use security: .implicitTLS")
            XCTAssertTrue(e.description.contains(
                "  hint:   this port speaks TLS first: use security: .implicitTLS\n"),
                e.description)
        }
        XCTAssertLessThan(ContinuousClock.now - start, .seconds(15),
                          "identified, not waited out")
    }

    func testCancelledTaskAbortsMidSend() async throws {
        // The peer stops reading after 354: with 8 MB to send the client
        // blocks in the middle of the message until the task is cancelled.
        let lines = Lines()
        var cfg = config(try port("STALL"), .none)
        cfg.timeouts = .all(.seconds(120))
        cfg.transcript = { lines.add($0) }
        var m = message("stalled")
        m.attachments = [.data(Data(repeating: 0x41, count: 8 << 20), filename: "big.bin")]
        let client = SMTPClient(cfg)
        let task = Task { try await client.send(m) }
        let deadline = ContinuousClock.now + .seconds(30)
        while !lines.all.contains(where: { $0.text.hasPrefix("354") }),
              ContinuousClock.now < deadline
        {
            try await Task.sleep(for: .milliseconds(20))
        }
        XCTAssertTrue(lines.all.contains { $0.text.hasPrefix("354") }, lines.text)
        try await Task.sleep(for: .milliseconds(300))  // now blocked in the message
        let start = ContinuousClock.now
        task.cancel()
        do {
            _ = try await task.value
            XCTFail("sent")
        } catch is CancellationError {
        } catch {
            XCTFail("not a CancellationError: \(error)")
        }
        XCTAssertLessThan(ContinuousClock.now - start, .seconds(10), "ended promptly")
    }

    func testSendToSmtpkitServe() async throws {
        let cfg = config(try port("SERVE"), .startTLS, try ca)
        let r = try await SMTPClient(cfg).send(
            Message(from: "zoe@example.org", to: ["bob@example.test"],
                    subject: "from Swift to serve", text: "hi\n"))
        XCTAssertEqual(r.reply.code, 250)
        XCTAssertNotNil(r.queueID)
    }

    func testProbeClosedPort() async throws {
        let p = await Probe.run(config(try port("CLOSED"), .none))
        XCTAssertFalse(p.passed)
        XCTAssertEqual(p.steps.map(\.name), ["dns", "tcp", "greeting", "ehlo", "tls"])
        XCTAssertEqual(p.steps.map(\.verdict), [.ok, .failure, .skipped, .skipped, .skipped])
        let f = try XCTUnwrap(p.failure)
        XCTAssertEqual(f.step, .connect)
        XCTAssertEqual(f.error?.kind, .connect)
        XCTAssertEqual(f.address, "127.0.0.1")
        XCTAssertTrue(f.detail.contains("refused"), f.detail)
        XCTAssertNotNil(f.hint)
        XCTAssertEqual(p.steps[0].addresses, ["127.0.0.1"])
    }

    func testProbeWrongNameCertificate() async throws {
        let p = await Probe.run(config(try port("WRONGNAME"), .startTLS, try ca))
        XCTAssertEqual(p.steps.map(\.name), ["dns", "tcp", "greeting", "ehlo", "tls", "ehlo"])
        XCTAssertEqual(p.steps.map(\.verdict), [.ok, .ok, .ok, .ok, .failure, .skipped])
        let f = try XCTUnwrap(p.failure)
        XCTAssertEqual(f.error?.kind, .certificate)
        XCTAssertTrue(f.detail.contains("NOT verified"), f.detail)
        XCTAssertEqual(f.explanation,
                       "the certificate is for another name than the one you connected to")
        let hint = try XCTUnwrap(f.hint)
        XCTAssertTrue(hint.contains("DNS:wrong.example") && hint.contains("tlsServerName"), hint)
        let tls = try XCTUnwrap(f.tls)
        XCTAssertFalse(tls.verified)
        XCTAssertEqual(tls.certificates.first?.names, "DNS:wrong.example")
        XCTAssertTrue(p.steps[3].extensions.contains { $0.keyword == "STARTTLS" })
    }

    /// A port that speaks TLS from the first byte says nothing to a plain
    /// client: the probe asks it what it is and names the setting to use.
    func testProbeTLSFirstSilentPort() async throws {
        let start = ContinuousClock.now
        let p = await Probe.run(config(try port("IMPLICIT"), .startTLS, try ca))
        XCTAssertEqual(p.steps.map(\.name), ["dns", "tcp", "greeting", "ehlo", "tls", "ehlo"])
        XCTAssertEqual(p.steps.map(\.verdict), [.ok, .ok, .failure, .skipped, .skipped, .skipped])
        let f = try XCTUnwrap(p.failure)
        XCTAssertEqual(f.peer, "tls")
        XCTAssertEqual(f.error?.kind, .notSMTP)
        XCTAssertTrue(f.detail.contains("speaks TLS from the first byte"), f.detail)
        XCTAssertEqual(f.hint, "this port speaks TLS first: use security: .implicitTLS")
        XCTAssertLessThan(ContinuousClock.now - start, .seconds(15),
                          "identified, not waited out (the greeting timeout is 20 s)")
    }

    func testProbeGoodServerWithEnvelope() async throws {
        var cfg = config(try port("STARTTLS"), .startTLS, try ca)
        cfg.credentials = password
        let p = await Probe.run(cfg, from: "zoe@example.org", to: ["bob@example.net"])
        XCTAssertTrue(p.passed, "\(p.steps)")
        XCTAssertEqual(p.steps.map(\.name),
                       ["dns", "tcp", "greeting", "ehlo", "tls", "ehlo", "auth", "mail", "rcpt",
                        "rset"])
        XCTAssertEqual(p.steps.map(\.step),
                       [.dns, .connect, .greeting, .ehlo, .tls, .ehlo, .auth, .mail, .rcpt, .rset])
        XCTAssertTrue(p.steps[4].detail.contains("verified"), p.steps[4].detail)
        XCTAssertEqual(p.steps[4].tls?.verified, true)
        XCTAssertNotNil(p.steps[6].mechanism)
        XCTAssertEqual(p.steps[8].recipient, "bob@example.net")
        XCTAssertEqual(p.steps[8].reply?.code, 250)
        let plain = await Probe.run(config(try port("PLAIN"), .none))
        XCTAssertTrue(plain.passed)
        XCTAssertEqual(plain.steps.last?.name, "tls")
        XCTAssertEqual(plain.steps.last?.verdict, .warning, "no TLS is a warning")
    }
}
