// The `smtpkit probe` checklist as a value: the C library's checklist
// (sk_client_probe, include/smtpkit/probe.h) run with a configuration's
// settings, its steps copied into Swift values. The checks, verdicts,
// explanations and hints are the library's; nothing is decided here.
import CSMTPKit
import Foundation

/// Why does mail not go out? A probe connects the way ``SMTPClient`` would
/// and checks each step, as `smtpkit probe` does: the name, a connection to
/// each of its addresses, the greeting (a silent port is asked what it is),
/// EHLO with its extensions explained, TLS with the certificate chain and
/// why it does not verify, AUTH, and with `from` the envelope (reset after:
/// nothing is sent). It stops at the first failure; the steps that would
/// have followed are listed as ``Verdict/skipped``.
///
/// ```swift
/// let probe = await Probe.run(client.configuration)
/// if let failed = probe.failure {
///     show("\(failed.name): \(failed.detail)", failed.hint)
/// }
/// ```
public struct Probe: Sendable, Hashable {
    /// How a step went.
    public enum Verdict: String, Sendable, Hashable {
        /// Works.
        case ok
        /// Works, but something is worth knowing (no TLS, an unverified
        /// certificate accepted, no ESMTP, an address that does not answer
        /// while another does).
        case warning
        /// Does not work; the probe stopped here.
        case failure
        /// Not checked: an earlier step failed.
        case skipped
    }

    /// One extension of the EHLO reply, explained.
    public struct Extension: Sendable, Hashable {
        /// "SIZE", "AUTH", upper case.
        public let keyword: String
        /// "35882577", "PLAIN LOGIN"; "" when none.
        public let parameters: String
        /// What it means ("messages up to 35.9 MB ...").
        public let meaning: String
    }

    /// One certificate of the chain the server sent (the first is its own).
    public struct Certificate: Sendable, Hashable {
        public let subject: String
        public let issuer: String
        public let notBefore: Date
        public let notAfter: Date
        /// The subjectAltNames: "DNS:mx.example.org, IP:192.0.2.1".
        public let names: String
        public let selfSigned: Bool
    }

    /// The TLS session a step saw.
    public struct TLSSession: Sendable, Hashable {
        /// "TLSv1.3".
        public let version: String
        public let cipher: String
        /// The chain and the name verified.
        public let verified: Bool
        /// Why not, when not verified.
        public let verifyError: String?
        public let certificates: [Certificate]
    }

    /// One line of the checklist.
    public struct Step: Sendable, Hashable {
        /// The check's name, as `smtpkit probe` prints it: dns, tcp, tls,
        /// greeting, ehlo, auth, mail, rcpt, rset.
        public let name: String
        /// The same as a step of ``SMTPError`` (tcp is `.connect`).
        public let step: SMTPError.Step
        public let verdict: Verdict
        /// What was found ("127.0.0.1:587 connected", "TLSv1.3 ..."), or
        /// what went wrong.
        public let detail: String
        /// What a refusal or problem means.
        public let explanation: String?
        /// What to do about a warning or failure (naming the
        /// ``SMTPClient/Configuration`` settings).
        public let hint: String?
        /// The server's reply at this step, when there was one.
        public let reply: Reply?
        /// The error of a failed step.
        public let error: SMTPError?
        /// The address this step is about (tcp, tls, greeting).
        public let address: String?
        /// How long the step took, when measured.
        public let elapsed: Duration?
        /// dns: the addresses of the name, in order.
        public let addresses: [String]
        /// tls: the session, when a handshake completed.
        public let tls: TLSSession?
        /// tls or greeting without an SMTP greeting: what listens there
        /// ("tls", "http", "smtp", "other", "silent", "closed") and the
        /// start of what it said.
        public let peer: String?
        public let peerSaid: String?
        /// ehlo: the server's name and its extensions.
        public let serverName: String?
        public let extensions: [Extension]
        /// auth: the mechanism that was accepted.
        public let mechanism: String?
        /// rcpt: the recipient tried.
        public let recipient: String?
    }

    /// The steps, in order: those taken, the failure among them if any,
    /// then those skipped.
    public let steps: [Step]

    /// No step failed.
    public var passed: Bool { failure == nil }
    /// The failed step, if any.
    public var failure: Step? { steps.first { $0.verdict == .failure } }

    /// Probe the server of `configuration` (its security, verification,
    /// credentials, EHLO name, timeouts and transcript hook), and with
    /// `from` try MAIL FROM and RCPT TO for each of `to` (at most 16), then
    /// RSET. Cancelling the task aborts the probe: the step in progress
    /// fails (``SMTPError/Kind/state``) and the rest are skipped.
    public static func run(_ configuration: SMTPClient.Configuration, from: String? = nil,
                           to: [String] = []) async -> Probe
    {
        let c: CClient
        do {
            c = try CClient(configuration)
        } catch let e as SMTPError {
            return Probe(steps: [Step(failed: e)])
        } catch {
            return Probe(steps: [])
        }
        let server = c.server
        let steps = await c.run { p in probe(p, server: server, from: from, to: to) }
        return Probe(steps: steps)
    }

    /// sk_client_probe on the client's thread, and its steps as values.
    private static func probe(_ p: OpaquePointer, server: String, from: String?, to: [String])
        -> [Step]
    {
        let strings = CStrings()
        let rcpts = to.map { strings.add($0) }
        var names = swiftOptionNames
        var result: OpaquePointer?
        var err = sk_error()
        rcpts.withUnsafeBufferPointer { rp in
            withUnsafePointer(to: &names) { np in
                var o = sk_probe_opts()
                o.from = strings.add(from)
                o.to = rp.baseAddress
                o.nto = rp.count
                o.names = np
                _ = sk_client_probe(p, &o, &result, &err)
            }
        }
        guard let result else {
            return [Step(failed: SMTPError(err, server: server, context: "probe failed"))]
        }
        defer { sk_probe_free(result) }
        return (0..<sk_probe_count(result)).compactMap { i in
            sk_probe_step_at(result, i).map { Step($0.pointee, server: server) }
        }
    }
}

extension Probe.Verdict {
    init(_ v: sk_probe_verdict) {
        switch v {
        case SK_PROBE_PASS: self = .ok
        case SK_PROBE_WARN: self = .warning
        case SK_PROBE_SKIP: self = .skipped
        default: self = .failure
        }
    }
}

extension Probe.Step {
    init(_ s: sk_probe_step, server: String) {
        name = String(cString: sk_probe_check_name(s.check))
        step = SMTPError.Step(s.error.step)
        verdict = Probe.Verdict(s.verdict)
        detail = string(fromCArray: s.detail)
        explanation = s.explanation.map { String(cString: $0) }
        hint = nonEmpty(string(fromCArray: s.hint))
        reply = s.has_reply != 0 ? Reply(s.reply) : nil
        error = verdict == .failure ? SMTPError(s.error, server: server, context: "probe failed") : nil
        address = nonEmpty(string(fromCArray: s.address))
        elapsed = s.elapsed_ms >= 0 ? .milliseconds(Int64(s.elapsed_ms)) : nil
        addresses = (0..<s.naddresses).compactMap { i in
            s.addresses?[i].map { String(cString: $0) }
        }
        tls = s.tls.map { Probe.TLSSession($0.pointee) }
        peer = s.peer.map { String(cString: sk_peer_kind_name($0.pointee.kind)) }
        peerSaid = s.peer.flatMap { nonEmpty(string(fromCArray: $0.pointee.said)) }
        serverName = s.check == SK_PROBE_EHLO ? nonEmpty(string(fromCArray: s.server_name)) : nil
        extensions = (0..<s.nextensions).compactMap { i in
            s.extensions.map { x in
                Probe.Extension(keyword: string(fromCArray: x[i].keyword),
                                parameters: string(fromCArray: x[i].params),
                                meaning: string(fromCArray: x[i].meaning))
            }
        }
        mechanism = s.mechanism.map { String(cString: $0) }
        recipient = s.check == SK_PROBE_RCPT ? string(fromCArray: s.recipient) : nil
    }

    /// A probe that could not start (the configuration, or memory).
    init(failed e: SMTPError) {
        name = e.stepName.lowercased()
        step = e.step
        verdict = .failure
        detail = e.text
        explanation = nil
        hint = e.hint
        reply = e.code.map { Reply(code: $0, enhancedStatus: e.enhancedStatus, text: e.text) }
        error = e
        address = nil
        elapsed = nil
        addresses = []
        tls = nil
        peer = nil
        peerSaid = nil
        serverName = nil
        extensions = []
        mechanism = nil
        recipient = nil
    }
}

extension Probe.TLSSession {
    init(_ t: sk_tls_info) {
        version = string(fromCArray: t.version)
        cipher = string(fromCArray: t.cipher)
        verified = t.verified != 0
        verifyError = t.verified != 0 ? nil : string(fromCArray: t.verify_text)
        let count = min(Int(t.chain_len), Int(SK_TLS_CHAIN_MAX_CERTS))
        certificates = withUnsafeBytes(of: t.chain) { raw in
            let certs = raw.bindMemory(to: sk_tls_cert.self)
            return (0..<count).map { i in
                let c = certs[i]
                return Probe.Certificate(
                    subject: string(fromCArray: c.subject), issuer: string(fromCArray: c.issuer),
                    notBefore: Date(timeIntervalSince1970: TimeInterval(c.not_before)),
                    notAfter: Date(timeIntervalSince1970: TimeInterval(c.not_after)),
                    names: string(fromCArray: c.san), selfSigned: c.self_signed != 0)
            }
        }
    }
}
