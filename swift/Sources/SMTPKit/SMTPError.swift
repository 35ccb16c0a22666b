// Errors of the SMTP exchange, as the C library reports them (sk_error).
import CSMTPKit
import Foundation

/// A server's reply: code, RFC 3463 enhanced status and text.
public struct Reply: Sendable, Hashable, CustomStringConvertible {
    /// 200...599.
    public let code: Int
    /// "2.1.5", or nil when the server gave none.
    public let enhancedStatus: String?
    /// The text after the code and status; the lines of a multi-line
    /// reply joined by "\n".
    public let text: String

    public init(code: Int, enhancedStatus: String?, text: String) {
        self.code = code
        self.enhancedStatus = enhancedStatus
        self.text = text
    }

    init(_ r: sk_reply) {
        code = Int(r.code)
        enhancedStatus = nonEmpty(string(fromCArray: r.enhanced))
        text = string(fromCArray: r.text)
    }

    /// 2xx.
    public var isSuccess: Bool { sk_reply_class_of(Int32(code)) == SK_REPLY_SUCCESS }

    /// "250 2.0.0 Ok: queued as ID".
    public var description: String {
        "\(code)\(enhancedStatus.map { " " + $0 } ?? "") \(text.replacingOccurrences(of: "\n", with: " / "))"
    }
}

/// Why sending failed: where (``step``), what the server said (``code``,
/// ``enhancedStatus``, ``text``), whether trying again later may work
/// (``isTransient``) and what to do (``hint``).
///
/// Its `description` is the block `smtpkit send` prints:
/// ```
/// smtpkit send: the message was not sent
///   step:   RCPT
///   server: smtp.example.org:587
///   reply:  550 5.1.1 no such user
///   hint:   the recipient's mailbox does not exist there; check the address
/// ```
public struct SMTPError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The step of the exchange the error happened at (`sk_step`).
    public enum Step: String, Sendable, Hashable {
        case none, compose, dns, connect, greeting, ehlo, tls, auth, mail, rcpt, data, rset, quit

        init(_ s: sk_step) {
            switch s {
            case SK_STEP_COMPOSE: self = .compose
            case SK_STEP_DNS: self = .dns
            case SK_STEP_CONNECT: self = .connect
            case SK_STEP_GREETING: self = .greeting
            case SK_STEP_EHLO: self = .ehlo
            case SK_STEP_TLS: self = .tls
            case SK_STEP_AUTH: self = .auth
            case SK_STEP_MAIL: self = .mail
            case SK_STEP_RCPT: self = .rcpt
            case SK_STEP_DATA: self = .data
            case SK_STEP_RSET: self = .rset
            case SK_STEP_QUIT: self = .quit
            default: self = .none
            }
        }
    }

    /// What kind of failure (`sk_err`), to `switch` on.
    public enum Kind: Sendable, Hashable {
        /// The server's name did not resolve.
        case dns
        /// Connection refused or unreachable.
        case connect
        /// The server did not answer in time.
        case timeout
        /// The server closed the connection.
        case closed
        /// The peer's answers are not SMTP.
        case notSMTP
        /// The TLS handshake or TLS I/O failed.
        case tls
        /// The certificate is not trusted, or is for another name.
        case certificate
        /// The server does not offer what is needed (STARTTLS, SMTPUTF8...).
        case unsupported
        /// Authentication failed.
        case authentication
        /// The server answered 4xx: trying later may work.
        case temporaryFailure
        /// The server answered 5xx.
        case permanentFailure
        /// The configuration cannot work (a missing CA file, AUTH without TLS).
        case configuration
        /// The message or an argument is not valid, or too big.
        case invalidInput
        /// The session was aborted (its task was cancelled) or used out of order.
        case state
        /// Out of memory, or a local I/O error.
        case local

        init(_ e: sk_err) {
            switch e {
            case SK_ERR_DNS: self = .dns
            case SK_ERR_CONNECT: self = .connect
            case SK_ERR_TIMEOUT: self = .timeout
            case SK_ERR_CLOSED: self = .closed
            case SK_ERR_PROTOCOL: self = .notSMTP
            case SK_ERR_TLS: self = .tls
            case SK_ERR_TLS_VERIFY: self = .certificate
            case SK_ERR_UNSUPPORTED: self = .unsupported
            case SK_ERR_AUTH: self = .authentication
            case SK_ERR_TEMPFAIL: self = .temporaryFailure
            case SK_ERR_PERMFAIL: self = .permanentFailure
            case SK_ERR_CONFIG: self = .configuration
            case SK_ERR_INVAL, SK_ERR_TOO_LONG, SK_ERR_SYNTAX: self = .invalidInput
            case SK_ERR_STATE: self = .state
            default: self = .local
            }
        }
    }

    public let kind: Kind
    public let step: Step
    /// The server's reply code; nil when the failure was not a reply.
    public let code: Int?
    /// The RFC 3463 status ("5.1.1"), when the server gave one.
    public let enhancedStatus: String?
    /// The server's text, or the C library's description.
    public let text: String
    /// Trying again later may work.
    public let isTransient: Bool
    /// One line for people on what it means and what to do, as
    /// `smtpkit send` says it but naming this package's settings
    /// (`security: .implicitTLS`, `timeouts`, ...): the C library's
    /// `sk_client_hint` for the error and what the session learned; nil
    /// when nothing more is known.
    public let hint: String?
    /// "host:port" of the server.
    public let server: String
    /// What was being done ("the message was not sent").
    public let context: String
    /// Per recipient, when the transaction got that far (every recipient
    /// refused, or the message refused after DATA).
    public let recipients: [RecipientResult]
    /// The C library's words for the error (`sk_strerror`).
    let errorName: String
    /// Every recipient refused: per refused recipient, the block `smtpkit
    /// send` prints ("recipient <ADDR> refused", its reply and hint).
    let refusals: [String]

    /// `client`: the session the error is of, while its thread holds it;
    /// what it learned (a silent port identified, a TLS session) chooses
    /// the hint.
    init(_ e: sk_error, server: String, context: String, recipients: [RecipientResult] = [],
         client: OpaquePointer? = nil)
    {
        kind = Kind(e.err)
        step = Step(e.step)
        code = e.code != 0 ? Int(e.code) : nil
        enhancedStatus = nonEmpty(string(fromCArray: e.enhanced))
        let t = string(fromCArray: e.text)
        text = t.isEmpty ? String(cString: sk_strerror(e.err)) : t
        isTransient = e.transient != 0
        hint = Self.hint(e, client: client)
        self.server = server
        self.context = context
        self.recipients = recipients
        errorName = String(cString: sk_strerror(e.err))
        refusals = e.step != SK_STEP_RCPT ? [] : recipients.compactMap { r in
            guard !r.accepted, r.reply.code != 0 else { return nil }
            var re = sk_error()
            re.err = sk_reply_class_of(Int32(r.reply.code)) == SK_REPLY_PERMANENT
                ? SK_ERR_PERMFAIL : SK_ERR_TEMPFAIL
            re.step = SK_STEP_RCPT
            re.code = Int32(r.reply.code)
            copy(r.reply.enhancedStatus ?? "", into: &re.enhanced)
            copy(r.reply.text, into: &re.text)
            return Self.block("recipient <\(r.address)> refused", step: "RCPT", server: server,
                              reply: r.reply.code, enhanced: r.reply.enhancedStatus,
                              text: r.reply.text, errorName: "",
                              hint: Self.hint(re, client: client))
        }
    }

    /// The C library's hint (`sk_client_hint`), naming this package's
    /// settings.
    private static func hint(_ e: sk_error, client: OpaquePointer?) -> String? {
        withUnsafePointer(to: e) { ep in
            withUnsafePointer(to: swiftOptionNames) { np in
                var buf = [CChar](repeating: 0, count: Int(SK_CLIENT_HINT_MAX_OCTETS))
                guard sk_client_hint(client, ep, np, &buf, buf.count) != nil else { return nil }
                return string(fromCBuffer: buf)
            }
        }
    }

    /// `smtpkit send`'s name of a step ("RCPT", "TLS").
    public var stepName: String {
        String(cString: sk_step_name(Self.cStep(step)))
    }

    private static func cStep(_ s: Step) -> sk_step {
        switch s {
        case .none: SK_STEP_NONE
        case .compose: SK_STEP_COMPOSE
        case .dns: SK_STEP_DNS
        case .connect: SK_STEP_CONNECT
        case .greeting: SK_STEP_GREETING
        case .ehlo: SK_STEP_EHLO
        case .tls: SK_STEP_TLS
        case .auth: SK_STEP_AUTH
        case .mail: SK_STEP_MAIL
        case .rcpt: SK_STEP_RCPT
        case .data: SK_STEP_DATA
        case .rset: SK_STEP_RSET
        case .quit: SK_STEP_QUIT
        }
    }

    /// When every recipient was refused, a block per refused recipient,
    /// as `smtpkit send` prints them.
    public var description: String {
        if !refusals.isEmpty { return refusals.joined() }
        return Self.block(context, step: stepName, server: server, reply: code,
                          enhanced: enhancedStatus, text: text, errorName: errorName, hint: hint)
    }

    /// One block as `smtpkit send` prints it (tools/smtpkit/send.c).
    private static func block(_ what: String, step: String, server: String, reply: Int?,
                              enhanced: String?, text: String, errorName: String,
                              hint: String?) -> String
    {
        let flat = text.replacingOccurrences(of: "\n", with: " / ")
        var s = "smtpkit send: \(what)\n  step:   \(step)\n"
        if !server.isEmpty { s += "  server: \(server)\n" }
        if let reply {
            s += "  reply:  \(reply)\(enhanced.map { " " + $0 } ?? "") \(flat)\n"
        } else {
            s += "  error:  \(errorName): \(flat)\n"
        }
        if let hint { s += "  hint:   \(hint)\n" }
        return s
    }
}

/// How the C library's hints name the settings: as ``SMTPClient/Configuration``
/// spells them (for ``SMTPError/hint`` and ``Probe``). Allocated once, never
/// freed.
nonisolated(unsafe) let swiftOptionNames: sk_option_names = {
    var n = sk_option_names()
    n.tls_starttls = UnsafePointer(strdup("security: .startTLS"))
    n.tls_implicit = UnsafePointer(strdup("security: .implicitTLS"))
    n.tls_none = UnsafePointer(strdup("security: .none"))
    n.ca_file = UnsafePointer(strdup("verification: .caFile"))
    n.insecure = UnsafePointer(strdup("verification: .insecure"))
    n.tls_name = UnsafePointer(strdup("tlsServerName"))
    n.timeout = UnsafePointer(strdup("timeouts"))
    n.server = UnsafePointer(strdup("host/port"))
    n.credentials = UnsafePointer(strdup("credentials"))
    n.allow_plaintext_auth = UnsafePointer(strdup("allowPlaintextAuthentication"))
    return n
}()
