// The SMTP client: configuration, one-shot sends and sessions, over the C
// library's blocking client (sk_client), whose calls run on threads of
// their own.
import CSMTPKit
import Foundation

/// How the connection is protected.
public enum Security: Sendable, Hashable {
    /// STARTTLS (RFC 3207), required: no plain-text fallback.
    case startTLS
    /// TLS from the first byte (RFC 8314, port 465).
    case implicitTLS
    /// No TLS at all. Only for a network you trust.
    case none
}

/// Which certificates the client trusts.
public enum CertificateVerification: Sendable, Hashable {
    /// The system's trust store; the certificate must name the host.
    case system
    /// The CA certificates in this PEM file instead of the system's.
    case caFile(URL)
    /// Encrypt without verifying the certificate. For tests only.
    case insecure
}

/// How the client authenticates (AUTH, RFC 4954). Credentials are sent
/// only over TLS unless ``SMTPClient/Configuration/allowPlaintextAuthentication``.
public enum Credentials: Sendable, Hashable, CustomStringConvertible {
    /// A password: the strongest of PLAIN and LOGIN the server offers.
    case password(user: String, password: String)
    /// An OAuth 2.0 bearer token (XOAUTH2).
    case oauth2(user: String, token: String)

    /// The user, never the secret.
    public var description: String {
        switch self {
        case .password(let user, _): "password for \(user)"
        case .oauth2(let user, _): "OAuth 2.0 token for \(user)"
        }
    }
}

/// Bounds on each wait; nil: the RFC 5321 4.5.3.2 values the C library
/// uses (5 minutes for most, 10 for the end of the message).
public struct Timeouts: Sendable, Hashable {
    /// The TCP connection (each address in turn).
    public var connect: Duration?
    /// The server's greeting (and implicit TLS's handshake).
    public var greeting: Duration?
    /// Each command's reply: EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA.
    public var command: Duration?
    /// Each block of the message, and the reply after its end.
    public var data: Duration?

    public init(connect: Duration? = nil, greeting: Duration? = nil, command: Duration? = nil,
                data: Duration? = nil)
    {
        self.connect = connect
        self.greeting = greeting
        self.command = command
        self.data = data
    }

    /// The same bound on every wait.
    public static func all(_ d: Duration) -> Timeouts {
        Timeouts(connect: d, greeting: d, command: d, data: d)
    }
}

/// One line of the SMTP conversation, for logging. AUTH data is masked
/// and the message's content is not reported.
public struct TranscriptLine: Sendable, Hashable, CustomStringConvertible {
    public enum Direction: Sendable, Hashable {
        /// Client to server.
        case client
        /// Server to client.
        case server
        /// What happened (connected to, TLS established).
        case info
    }

    public let direction: Direction
    public let text: String

    /// "C: EHLO host", "S: 250 ok", "*: connected to ...".
    public var description: String {
        switch direction {
        case .client: "C: \(text)"
        case .server: "S: \(text)"
        case .info: "*: \(text)"
        }
    }
}

/// What happened to one recipient.
public struct RecipientResult: Sendable, Hashable {
    /// The addr-spec as sent in RCPT TO.
    public let address: String
    /// The server's reply to RCPT TO.
    public let reply: Reply
    /// The server took the recipient (2xx).
    public let accepted: Bool
}

/// The outcome of sending one message: the server took it for the
/// ``accepted`` recipients.
public struct SendResult: Sendable, Hashable {
    /// Per recipient, in the order sent.
    public let recipients: [RecipientResult]
    /// The server's reply after the message ("250 2.0.0 Ok: queued as ID").
    public let reply: Reply
    /// The queue ID from "queued as ID", when the server said one.
    public let queueID: String?

    public var accepted: [RecipientResult] { recipients.filter(\.accepted) }
    public var refused: [RecipientResult] { recipients.filter { !$0.accepted } }
}

/// Sends messages through an SMTP server (a submission server, a relay).
///
/// ```swift
/// let client = SMTPClient(host: "smtp.example.org",
///                         credentials: .password(user: "zoe", password: pw))
/// let result = try await client.send(message)   // STARTTLS, verified
/// ```
/// Errors are ``SMTPError`` (the server or the network), ``MessageError``
/// (the message), or `CancellationError` when the task was cancelled: that
/// aborts the SMTP session at once, closing the connection without ending
/// the message, so nothing half-sent is delivered.
///
/// The C library's calls block; each runs on a thread of its own, never on
/// Swift's cooperative thread pool.
public struct SMTPClient: Sendable {
    public struct Configuration: Sendable {
        /// Name or address of the server.
        public var host: String
        /// nil: 465 with ``Security/implicitTLS``, 587 (submission) otherwise.
        public var port: Int?
        /// nil: implicit TLS on port 465, STARTTLS (required) elsewhere.
        public var security: Security?
        public var verification: CertificateVerification
        /// The name the certificate must carry, sent as SNI; nil: ``host``.
        public var tlsServerName: String?
        public var credentials: Credentials?
        /// The SASL mechanism ("PLAIN", "LOGIN", "XOAUTH2"); nil: the
        /// strongest the server offers that fits the credentials.
        public var authenticationMechanism: String?
        /// Send credentials over a connection without TLS (never by default,
        /// RFC 4954 4, RFC 8314 3).
        public var allowPlaintextAuthentication: Bool
        public var timeouts: Timeouts
        /// When the server has said nothing this long after the connection,
        /// find out on two more connections what listens there (a TLS-first
        /// port, a web server, a silent one), as `smtpkit send` does: a
        /// TLS-first or web server fails at once, and the error's hint says
        /// what to change. nil: wait for the greeting alone, as an MTA does.
        /// Default 1 s.
        public var identifyAfter: Duration?
        /// The name sent in EHLO; nil: this machine's name.
        public var heloName: String?
        /// Called with each line of the conversation, on the session's
        /// thread, in order.
        public var transcript: (@Sendable (TranscriptLine) -> Void)?

        public init(host: String, port: Int? = nil, security: Security? = nil,
                    verification: CertificateVerification = .system,
                    tlsServerName: String? = nil, credentials: Credentials? = nil,
                    allowPlaintextAuthentication: Bool = false, timeouts: Timeouts = Timeouts(),
                    heloName: String? = nil,
                    identifyAfter: Duration? = .milliseconds(Int(SK_CLIENT_IDENTIFY_AFTER_MS)),
                    transcript: (@Sendable (TranscriptLine) -> Void)? = nil)
        {
            self.host = host
            self.port = port
            self.security = security
            self.verification = verification
            self.tlsServerName = tlsServerName
            self.credentials = credentials
            self.allowPlaintextAuthentication = allowPlaintextAuthentication
            self.timeouts = timeouts
            self.heloName = heloName
            self.identifyAfter = identifyAfter
            self.transcript = transcript
        }
    }

    public var configuration: Configuration

    public init(_ configuration: Configuration) {
        self.configuration = configuration
    }

    /// A client with the configuration's fields (see ``Configuration``).
    public init(host: String, port: Int? = nil, security: Security? = nil,
                verification: CertificateVerification = .system, credentials: Credentials? = nil,
                timeouts: Timeouts = Timeouts(),
                transcript: (@Sendable (TranscriptLine) -> Void)? = nil)
    {
        self.init(Configuration(host: host, port: port, security: security,
                                verification: verification, credentials: credentials,
                                timeouts: timeouts, transcript: transcript))
    }

    /// Connect, send `message` to its To, Cc and Bcc recipients, and QUIT.
    ///
    /// When some recipients are refused the message goes to the others and
    /// the result says which were refused; when all are, or the server
    /// refuses the message, this throws.
    public func send(_ message: Message) async throws -> SendResult {
        try await withSession { try await $0.send(message) }
    }

    /// Connect (TLS, AUTH), run `body` with the session, then QUIT: for
    /// several messages over one connection.
    public func withSession<R>(_ body: (Session) async throws -> R) async throws -> R {
        let session = try Session(configuration)
        try await session.open()
        let r: R
        do {
            r = try await body(session)
        } catch {
            await session.quit()
            throw error
        }
        await session.quit()
        return r
    }
}

/// A connection to the server, ready to send (see
/// ``SMTPClient/withSession(_:)``). Sends from several tasks go one after
/// the other. Cancelling a task while it sends ends the session: later
/// sends throw.
public final class Session: Sendable {
    let client: CClient

    init(_ configuration: SMTPClient.Configuration) throws {
        client = try CClient(configuration)
    }

    func open() async throws {
        let c = client
        let server = c.server
        let e: SMTPError? = await c.run { p in
            var err = sk_error()
            if sk_client_connect(p, &err) == SK_OK { return nil }
            return SMTPError(err, server: server, context: "could not get ready to send",
                             client: p)
        }
        try Task.checkCancellation()
        if let e { throw e }
    }

    /// Send `message`; see ``SMTPClient/send(_:)``.
    public func send(_ message: Message) async throws -> SendResult {
        let composed = try ComposedMessage(message)
        let c = client
        let server = c.server
        let outcome: Result<SendResult, SMTPError> = await c.run { p in
            var res = sk_send_result()
            var err = sk_error()
            let rc = sk_client_send_message(p, composed.pointer, nil, &res, &err)
            defer { sk_send_result_free(&res) }
            let rcpts = (0..<res.nrcpt).map { i in
                let r = res.rcpts[i]
                return RecipientResult(address: String(cString: r.address), reply: Reply(r.reply),
                                       accepted: r.accepted != 0)
            }
            if rc != SK_OK {
                return .failure(SMTPError(err, server: server, context: "the message was not sent",
                                          recipients: rcpts, client: p))
            }
            let qid = string(fromCArray: res.queue_id)
            return .success(SendResult(recipients: rcpts, reply: Reply(res.data),
                                       queueID: nonEmpty(qid)))
        }
        try Task.checkCancellation()
        return try outcome.get()
    }

    /// QUIT; errors are of no use then (the messages are sent or not).
    func quit() async {
        _ = await client.run { p in
            var err = sk_error()
            return sk_client_quit(p, &err) == SK_OK
        }
    }
}

/// The C client (`sk_client`) and what its callbacks need. Its calls run
/// one at a time (the lock), each on a new thread; `sk_client_abort`, the
/// one call made while another runs, is safe from any thread, and
/// `sk_client_free` runs only when nothing holds this object any more.
final class CClient: @unchecked Sendable {
    let pointer: OpaquePointer
    /// "host:port", as `smtpkit send` shows it.
    let server: String
    private let lock = NSLock()
    private let transcript: TranscriptSink?

    init(_ cfg: SMTPClient.Configuration) throws {
        let strings = CStrings()
        var o = sk_client_opts()
        o.host = strings.add(cfg.host)
        o.port = UInt16(clamping: cfg.port ?? 0)
        switch cfg.security {
        case nil: o.tls = SK_TLS_DEFAULT
        case .startTLS: o.tls = SK_TLS_STARTTLS
        case .implicitTLS: o.tls = SK_TLS_IMPLICIT
        case .some(.none): o.tls = SK_TLS_NONE
        }
        switch cfg.verification {
        case .system: break
        case .caFile(let url): o.ca_file = strings.add(url.path)
        case .insecure: o.insecure = 1
        }
        o.tls_name = strings.add(cfg.tlsServerName)
        switch cfg.credentials {
        case nil: break
        case .password(let user, let password):
            o.user = strings.add(user)
            o.password = strings.add(password)
        case .oauth2(let user, let token):
            o.user = strings.add(user)
            o.oauth_token = strings.add(token)
        }
        o.auth_mech = strings.add(cfg.authenticationMechanism)
        o.allow_plaintext_auth = cfg.allowPlaintextAuthentication ? 1 : 0
        o.helo_name = strings.add(cfg.heloName)
        let t = cfg.timeouts
        o.connect_timeout_ms = Self.ms(t.connect)
        o.greeting_timeout_ms = Self.ms(t.greeting)
        for kp in [\sk_client_opts.command_timeout_ms, \.mail_timeout_ms, \.rcpt_timeout_ms,
                   \.data_init_timeout_ms] { o[keyPath: kp] = Self.ms(t.command) }
        o.data_block_timeout_ms = Self.ms(t.data)
        o.data_end_timeout_ms = Self.ms(t.data)
        o.identify_after_ms = Self.ms(cfg.identifyAfter)
        if let fn = cfg.transcript {
            let sink = TranscriptSink(fn)
            transcript = sink
            o.transcript = transcriptLine
            o.transcript_ctx = Unmanaged.passUnretained(sink).toOpaque()
        } else {
            transcript = nil
        }
        let port = cfg.port ?? (cfg.security == .implicitTLS ? 465 : 587)
        server = cfg.host.contains(":") ? "[\(cfg.host)]:\(port)" : "\(cfg.host):\(port)"
        guard let p = sk_client_new(&o) else {
            var e = sk_error()
            e.err = cfg.host.isEmpty ? SK_ERR_CONFIG : SK_ERR_NOMEM
            e.step = SK_STEP_CONNECT
            throw SMTPError(e, server: server, context: "could not get ready to send")
        }
        pointer = p
    }

    /// Milliseconds for the C options; 0 (the default) for nil.
    private static func ms(_ d: Duration?) -> UInt32 {
        guard let d else { return 0 }
        let (s, atto) = d.components
        let v = s * 1000 + atto / 1_000_000_000_000_000
        return UInt32(clamping: max(v, 1))
    }

    /// Run `body` with the C client on a thread of its own, after the calls
    /// before it; cancelling the task aborts the C client (the call in
    /// progress returns at once, and every later one fails).
    func run<T: Sendable>(_ body: @escaping @Sendable (OpaquePointer) -> T) async -> T {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (k: CheckedContinuation<T, Never>) in
                let thread = Thread { [self] in
                    lock.lock()
                    let r = body(pointer)
                    lock.unlock()
                    k.resume(returning: r)
                }
                thread.name = "smtpkit-client"
                thread.start()
            }
        } onCancel: {
            sk_client_abort(pointer)
        }
    }

    deinit { sk_client_free(pointer) }
}

/// The transcript function, kept alive by its CClient.
final class TranscriptSink: Sendable {
    let fn: @Sendable (TranscriptLine) -> Void
    init(_ fn: @escaping @Sendable (TranscriptLine) -> Void) { self.fn = fn }
}

/// The C transcript callback: one line to the sink in `ctx`.
private func transcriptLine(_ ctx: UnsafeMutableRawPointer?, _ dir: CChar,
                            _ line: UnsafePointer<CChar>?, _ len: Int)
{
    guard let ctx, let line else { return }
    let sink = Unmanaged<TranscriptSink>.fromOpaque(ctx).takeUnretainedValue()
    let text = String(decoding: UnsafeRawBufferPointer(start: line, count: len), as: UTF8.self)
    let d: TranscriptLine.Direction = dir == 0x43 ? .client : dir == 0x53 ? .server : .info
    sink.fn(TranscriptLine(direction: d, text: text))
}
