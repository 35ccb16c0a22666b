// A message to send, as a Swift value; the C composer (src/mime) makes its
// RFC 5322 form.
import CSMTPKit
import Foundation

/// An email message: addresses, subject, bodies, attachments and extra
/// header fields, a value type that is checked and rendered by the C
/// library's composer.
///
/// Build it with properties:
/// ```swift
/// var m = Message(from: "Zoë <zoe@example.org>", subject: "Grüße")
/// m.to = ["bob@example.net"]
/// m.text = "Hello\n"
/// m.attachments.append(.file(URL(fileURLWithPath: "report.pdf")))
/// ```
/// or with the result builder:
/// ```swift
/// let m = Message {
///     From("Zoë <zoe@example.org>")
///     To("bob@example.net")
///     Subject("Grüße")
///     TextBody("Hello\n")
///     Attachment.data(Data("a,b\n".utf8), filename: "t.csv", contentType: "text/csv")
/// }
/// ```
/// Addresses are `user@domain` or `Display Name <user@domain>`, UTF-8
/// allowed. Nothing is checked until the message is rendered or sent; then
/// a CR or LF in a header, a malformed address or an unreadable file throws
/// a ``MessageError`` naming the field.
public struct Message: Sendable, Hashable {
    /// The author (From); its address is the envelope sender unless
    /// ``sender`` is set.
    public var from: String?
    /// Sender (RFC 5322 3.6.2), when someone sends for the author.
    public var sender: String?
    public var to: [String] = []
    public var cc: [String] = []
    /// Envelope recipients that never appear in the rendered message.
    public var bcc: [String] = []
    public var replyTo: String?
    public var subject: String?
    /// The plain-text body (UTF-8; LF or CRLF line ends).
    public var text: String?
    /// The HTML body; with ``text`` it makes a multipart/alternative.
    public var html: String?
    public var attachments: [Attachment] = []
    /// Extra header fields, in order (not the ones the composer writes:
    /// From, To, Subject, Date, Message-ID, MIME-Version, Content-*...).
    public var headers: [Header] = []
    /// Message-ID ("left@right"); by default one is made from 128 random
    /// bits and the domain of From, the same for every rendering of this
    /// value's C form.
    public var messageID: String?
    /// Date; by default the time of rendering.
    public var date: Date?

    /// A message with the fields most messages set.
    public init(from: String? = nil, to: [String] = [], subject: String? = nil, text: String? = nil) {
        self.from = from
        self.to = to
        self.subject = subject
        self.text = text
    }

    /// A message made of components (``From``, ``To``, ``Subject``,
    /// ``TextBody``, ``Attachment``...).
    public init(@MessageBuilder _ build: () -> [any MessageComponent]) {
        self.init()
        for component in build() { component.apply(to: &self) }
    }

    /// The message as it goes on the wire: RFC 5322 with MIME, CRLF line
    /// ends, Bcc left out, from the C composer (`sk_message_render`).
    public func rendered() throws(MessageError) -> Data {
        let m = try ComposedMessage(self)
        return try m.render()
    }

    /// The envelope recipients (To, Cc, Bcc addr-specs without
    /// duplicates), as the C library works them out.
    public func envelopeRecipients() throws(MessageError) -> [String] {
        let m = try ComposedMessage(self)
        return (0..<sk_message_recipient_count(m.pointer)).map {
            String(cString: sk_message_recipient(m.pointer, $0))
        }
    }
}

/// A file attached to a message, or a part shown inside the HTML body.
public struct Attachment: Sendable, Hashable {
    /// Where the content comes from.
    public enum Source: Sendable, Hashable {
        /// Bytes given here, under a file name.
        case data(Data, filename: String)
        /// A file read when the message is rendered (its name is the last
        /// path component).
        case file(URL)
    }

    public var source: Source
    /// The media type ("application/pdf"); nil: from the file name's
    /// extension (`sk_mime_type_for_filename`).
    public var contentType: String?
    /// For an inline part: the Content-ID the HTML refers to as
    /// `cid:ID` (bare, "logo@example.org"). nil: an attachment.
    public var contentID: String?

    public init(source: Source, contentType: String? = nil, contentID: String? = nil) {
        self.source = source
        self.contentType = contentType
        self.contentID = contentID
    }

    /// Bytes attached under `filename`.
    public static func data(_ data: Data, filename: String, contentType: String? = nil) -> Attachment {
        Attachment(source: .data(data, filename: filename), contentType: contentType)
    }

    /// A file, read when the message is rendered.
    public static func file(_ url: URL, contentType: String? = nil) -> Attachment {
        Attachment(source: .file(url), contentType: contentType)
    }

    /// An inline part (an image the HTML shows as `<img src="cid:ID">`).
    public static func inline(_ source: Source, contentID: String, contentType: String? = nil)
        -> Attachment
    {
        Attachment(source: source, contentType: contentType, contentID: contentID)
    }
}

/// An extra header field; the value is folded, and words that are not
/// ASCII become RFC 2047 encoded words.
public struct Header: Sendable, Hashable {
    public var name: String
    public var value: String

    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }
}

/// Why a ``Message`` cannot be rendered: the field, and the C library's
/// reason.
public struct MessageError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The part of the message at fault.
    public enum Field: Sendable, Hashable, CustomStringConvertible {
        case from, sender, replyTo, subject, text, html, messageID
        /// The address at this index of ``Message/to``.
        case to(Int)
        case cc(Int)
        case bcc(Int)
        /// The attachment at this index of ``Message/attachments``.
        case attachment(Int)
        /// The extra header field of this name.
        case header(String)
        /// The message as a whole (no From; too big).
        case message

        public var description: String {
            switch self {
            case .from: "from"
            case .sender: "sender"
            case .replyTo: "replyTo"
            case .subject: "subject"
            case .text: "text"
            case .html: "html"
            case .messageID: "messageID"
            case .to(let i): "to[\(i)]"
            case .cc(let i): "cc[\(i)]"
            case .bcc(let i): "bcc[\(i)]"
            case .attachment(let i): "attachments[\(i)]"
            case .header(let name): "header \(name)"
            case .message: "message"
            }
        }
    }

    /// What is wrong, in the C library's terms.
    public enum Reason: Sendable, Hashable {
        /// A CR or LF in a header value, a name or an address (header
        /// injection is refused, never stripped), text that is not UTF-8,
        /// a header the composer writes itself, or From missing.
        case invalid
        /// A malformed address.
        case syntax
        /// Over a limit (an attachment's size, a word longer than a line).
        case tooLong
        /// A file to attach does not exist.
        case notFound
        /// A file to attach cannot be read.
        case unreadable
        /// Out of memory.
        case noMemory
    }

    public let field: Field
    public let reason: Reason
    /// The C library's description ("CR or LF in a header value").
    public let detail: String

    public var description: String { "\(field): \(detail)" }

    init(field: Field, error: sk_error) {
        self.field = field
        switch error.err {
        case SK_ERR_SYNTAX: reason = .syntax
        case SK_ERR_TOO_LONG: reason = .tooLong
        case SK_ERR_NOT_FOUND: reason = .notFound
        case SK_ERR_IO: reason = .unreadable
        case SK_ERR_NOMEM: reason = .noMemory
        default: reason = .invalid
        }
        let text = string(fromCArray: error.text)
        detail = text.isEmpty ? String(cString: sk_strerror(error.err)) : text
    }
}

/// The C form of a ``Message`` (`sk_message`), made field by field so that
/// an error names the field.
/// Immutable once made (rendering reads it), and used by one thread at a
/// time: sendable to the session's thread.
final class ComposedMessage: @unchecked Sendable {
    let pointer: OpaquePointer

    init(_ m: Message) throws(MessageError) {
        guard let p = sk_message_new() else {
            var e = sk_error()
            e.err = SK_ERR_NOMEM
            throw MessageError(field: .message, error: e)
        }
        pointer = p
        func check(_ field: MessageError.Field, _ call: (UnsafeMutablePointer<sk_error>) -> sk_err)
            throws(MessageError)
        {
            var e = sk_error()
            if call(&e) != SK_OK { throw MessageError(field: field, error: e) }
        }
        if let v = m.from { try check(.from) { sk_message_set_from(p, v, $0) } }
        if let v = m.sender { try check(.sender) { sk_message_set_sender(p, v, $0) } }
        if let v = m.replyTo { try check(.replyTo) { sk_message_set_reply_to(p, v, $0) } }
        for (i, v) in m.to.enumerated() { try check(.to(i)) { sk_message_add_to(p, v, $0) } }
        for (i, v) in m.cc.enumerated() { try check(.cc(i)) { sk_message_add_cc(p, v, $0) } }
        for (i, v) in m.bcc.enumerated() { try check(.bcc(i)) { sk_message_add_bcc(p, v, $0) } }
        if let v = m.subject { try check(.subject) { sk_message_set_subject(p, v, $0) } }
        if let v = m.text { try check(.text) { sk_message_set_text(p, v, $0) } }
        if let v = m.html { try check(.html) { sk_message_set_html(p, v, $0) } }
        for (i, a) in m.attachments.enumerated() {
            try check(.attachment(i)) { e in Self.attach(p, a, e) }
        }
        for h in m.headers {
            try check(.header(h.name)) { sk_message_add_header(p, h.name, h.value, $0) }
        }
        if let v = m.messageID { try check(.messageID) { sk_message_set_message_id(p, v, $0) } }
        if let d = m.date { sk_message_set_date(p, Int64(d.timeIntervalSince1970.rounded(.down))) }
    }

    private static func attach(_ p: OpaquePointer, _ a: Attachment,
                               _ e: UnsafeMutablePointer<sk_error>) -> sk_err
    {
        switch (a.source, a.contentID) {
        case (.file(let url), nil):
            return sk_message_attach_file(p, url.path, a.contentType, e)
        case (.file(let url), let cid?):
            return sk_message_add_inline_file(p, cid, url.path, a.contentType, e)
        case (.data(let data, let name), let cid):
            return data.withUnsafeBytes { raw in
                if let cid {
                    return sk_message_add_inline_data(p, cid, name, raw.baseAddress, raw.count,
                                                      a.contentType, e)
                }
                return sk_message_attach_data(p, name, raw.baseAddress, raw.count, a.contentType, e)
            }
        }
    }

    func render() throws(MessageError) -> Data {
        var buf = sk_buf()
        sk_buf_init(&buf, Int(SK_MESSAGE_RENDER_MAX_OCTETS))
        defer { sk_buf_free(&buf) }
        var e = sk_error()
        guard sk_message_render(pointer, &buf, &e) == SK_OK else {
            throw MessageError(field: e.err == SK_ERR_INVAL ? .from : .message, error: e)
        }
        return buf.len == 0 ? Data() : Data(bytes: buf.data, count: buf.len)
    }

    deinit { sk_message_free(pointer) }
}

