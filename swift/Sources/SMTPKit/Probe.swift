// The `smtpkit probe` checklist as a value: each step of the way to a
// server (connect, greeting, EHLO, TLS, AUTH, envelope) with a verdict,
// taken by the C client's step calls; the errors and their hints are the
// C library's.
import CSMTPKit
import Foundation

/// Why does mail not go out? A probe connects the way ``SMTPClient`` would
/// and checks each step, stopping at the first failure with its cause and
/// hint; it never sends a message (an envelope, when given, is tried and
/// reset).
///
/// ```swift
/// let probe = await Probe.run(client.configuration)
/// if let failed = probe.failure {
///     show("\(failed.step): \(failed.detail)", failed.hint)
/// }
/// ```
public struct Probe: Sendable, Hashable {
    /// How a step went.
    public enum Verdict: String, Sendable, Hashable {
        /// Works.
        case ok
        /// Works, but something is worth knowing (no TLS, an unverified
        /// certificate accepted, no ESMTP).
        case warning
        /// Does not work; the probe stopped here.
        case failure
    }

    /// One line of the checklist.
    public struct Step: Sendable, Hashable {
        /// Which step: dns, connect, tls, greeting, ehlo, auth, mail,
        /// rcpt, rset.
        public let step: SMTPError.Step
        public let verdict: Verdict
        /// What was found ("connected to 127.0.0.1 port 587", "TLSv1.3
        /// ...", the extensions), or what went wrong.
        public let detail: String
        /// What to do about a warning or failure.
        public let hint: String?
        /// The server's reply at this step, when there was one.
        public let reply: Reply?
        /// The error of a failed step.
        public let error: SMTPError?
    }

    /// The steps taken, in order; the last is the failure if any.
    public let steps: [Step]

    /// No step failed.
    public var passed: Bool { failure == nil }
    /// The failed step, if any.
    public var failure: Step? { steps.first { $0.verdict == .failure } }

    /// Probe the server of `configuration` (its security, verification and
    /// credentials), and with `from` try MAIL FROM and RCPT TO for each of
    /// `to`, then RSET. Cancelling the task aborts the probe; the steps so
    /// far are returned, the last a failure.
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
        let cfg = ProbeSettings(configuration)
        let server = c.server
        let steps = await c.run { p in
            var w = StepWriter(server: server)
            Self.walk(p, cfg, from: from, to: to, &w)
            return w.steps
        }
        return Probe(steps: steps)
    }

    /// What the walk needs of the configuration.
    struct ProbeSettings: Sendable {
        let implicit: Bool
        let plain: Bool
        let authenticate: Bool

        init(_ c: SMTPClient.Configuration) {
            implicit = c.security == .implicitTLS || (c.security == nil && c.port == 465)
            plain = c.security == Security.none
            authenticate = c.credentials != nil
        }
    }

    struct StepWriter {
        let server: String
        var steps: [Step] = []

        mutating func ok(_ s: SMTPError.Step, _ detail: String, reply: Reply? = nil) {
            steps.append(Step(step: s, verdict: .ok, detail: detail, hint: nil, reply: reply,
                              error: nil))
        }

        mutating func warn(_ s: SMTPError.Step, _ detail: String, hint: String) {
            steps.append(Step(step: s, verdict: .warning, detail: detail, hint: hint, reply: nil,
                              error: nil))
        }

        /// Record err as the failure; false, to stop the walk.
        mutating func fail(_ err: sk_error) -> Bool {
            steps.append(Step(failed: SMTPError(err, server: server, context: "probe failed")))
            return false
        }
    }

    private static func walk(_ p: OpaquePointer, _ cfg: ProbeSettings, from: String?, to: [String],
                             _ w: inout StepWriter)
    {
        var err = sk_error()
        guard sk_client_open(p, &err) == SK_OK else { _ = w.fail(err); return }
        w.ok(.connect, "connected to \(String(cString: sk_client_remote_address(p))) port "
            + "\(sk_client_remote_port(p))")
        if cfg.implicit { tlsStep(p, cfg, &w) }
        if let g = sk_client_greeting(p) { w.ok(.greeting, Reply(g.pointee).description, reply: Reply(g.pointee)) }

        guard sk_client_ehlo(p, &err) == SK_OK else { _ = w.fail(err); return }
        ehloStep(p, &w)

        if !cfg.implicit && !cfg.plain {
            guard sk_client_starttls(p, &err) == SK_OK else { _ = w.fail(err); return }
            tlsStep(p, cfg, &w)
            ehloStep(p, &w)
        } else if cfg.plain {
            let offered = sk_client_ext_param(p, "STARTTLS") != nil
            w.warn(.tls, "no TLS (security .none)" + (offered ? "; the server offers STARTTLS" : ""),
                   hint: offered ? "use .startTLS: the server offers it"
                       : "everything, credentials included, crosses the network in clear")
        }

        if cfg.authenticate {
            guard sk_client_authenticate(p, &err) == SK_OK else { _ = w.fail(err); return }
            w.ok(.auth, "accepted (\(String(cString: sk_sasl_mech_name(sk_client_auth_mech(p)))))")
        }

        if let from {
            var r = sk_reply()
            guard sk_client_mail(p, from, nil, &r, &err) == SK_OK else { _ = w.fail(err); return }
            w.ok(.mail, Reply(r).description, reply: Reply(r))
            for rcpt in to {
                guard sk_client_rcpt(p, rcpt, nil, &r, &err) == SK_OK else { _ = w.fail(err); return }
                w.ok(.rcpt, "\(rcpt): \(Reply(r))", reply: Reply(r))
            }
            guard sk_client_rset(p, &err) == SK_OK else { _ = w.fail(err); return }
            w.ok(.rset, "envelope reset: nothing was sent")
        }
        _ = sk_client_quit(p, &err)
    }

    private static func ehloStep(_ p: OpaquePointer, _ w: inout StepWriter) {
        let lines = String(cString: sk_client_ehlo_lines(p)).split(separator: "\n").dropFirst()
        let ext = lines.isEmpty ? "no extensions" : "extensions: " + lines.joined(separator: ", ")
        if let info = sk_client_extensions(p), info.pointee.esmtp == 0 {
            w.warn(.ehlo, "EHLO refused, HELO accepted: no ESMTP",
                   hint: "without ESMTP there is no STARTTLS, AUTH or SIZE")
        } else {
            w.ok(.ehlo, ext)
        }
    }

    private static func tlsStep(_ p: OpaquePointer, _ cfg: ProbeSettings, _ w: inout StepWriter) {
        guard let t = sk_client_tls_info(p)?.pointee, t.active != 0 else { return }
        let what = "\(string(fromCArray: t.version)) \(string(fromCArray: t.cipher))"
        if t.verified != 0 {
            w.ok(.tls, "\(what), certificate verified for \(string(fromCArray: t.sni))")
        } else {
            w.warn(.tls, "\(what), certificate NOT verified: \(string(fromCArray: t.verify_text))",
                   hint: "encrypted but not authenticated (verification .insecure): use a "
                       + "certificate the client trusts, or .caFile with its CA")
        }
    }
}

extension Probe.Step {
    init(failed e: SMTPError) {
        step = e.step
        verdict = .failure
        detail = e.text
        hint = e.hint
        reply = e.code.map { Reply(code: $0, enhancedStatus: e.enhancedStatus, text: e.text) }
        error = e
    }
}
