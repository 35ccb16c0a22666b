// The result builder of Message { ... } and its components.
import Foundation

/// A part of a message in a ``Message/init(_:)`` block.
public protocol MessageComponent: Sendable {
    /// Set or add this component's part of `message`.
    func apply(to message: inout Message)
}

/// Collects the components of a `Message { ... }` block, with `if`,
/// `if`/`else` and `for` allowed among them.
@resultBuilder
public enum MessageBuilder {
    public static func buildExpression(_ c: any MessageComponent) -> [any MessageComponent] { [c] }
    public static func buildBlock(_ parts: [any MessageComponent]...) -> [any MessageComponent] {
        parts.flatMap { $0 }
    }
    public static func buildOptional(_ c: [any MessageComponent]?) -> [any MessageComponent] {
        c ?? []
    }
    public static func buildEither(first c: [any MessageComponent]) -> [any MessageComponent] { c }
    public static func buildEither(second c: [any MessageComponent]) -> [any MessageComponent] { c }
    public static func buildArray(_ c: [[any MessageComponent]]) -> [any MessageComponent] {
        c.flatMap { $0 }
    }
}

/// The author (``Message/from``).
public struct From: MessageComponent {
    let mailbox: String
    public init(_ mailbox: String) { self.mailbox = mailbox }
    public func apply(to m: inout Message) { m.from = mailbox }
}

/// ``Message/sender``.
public struct Sender: MessageComponent {
    let mailbox: String
    public init(_ mailbox: String) { self.mailbox = mailbox }
    public func apply(to m: inout Message) { m.sender = mailbox }
}

/// Recipients added to ``Message/to``.
public struct To: MessageComponent {
    let mailboxes: [String]
    public init(_ mailboxes: String...) { self.mailboxes = mailboxes }
    public func apply(to m: inout Message) { m.to += mailboxes }
}

/// Recipients added to ``Message/cc``.
public struct Cc: MessageComponent {
    let mailboxes: [String]
    public init(_ mailboxes: String...) { self.mailboxes = mailboxes }
    public func apply(to m: inout Message) { m.cc += mailboxes }
}

/// Recipients added to ``Message/bcc``.
public struct Bcc: MessageComponent {
    let mailboxes: [String]
    public init(_ mailboxes: String...) { self.mailboxes = mailboxes }
    public func apply(to m: inout Message) { m.bcc += mailboxes }
}

/// ``Message/replyTo``.
public struct ReplyTo: MessageComponent {
    let mailbox: String
    public init(_ mailbox: String) { self.mailbox = mailbox }
    public func apply(to m: inout Message) { m.replyTo = mailbox }
}

/// ``Message/subject``.
public struct Subject: MessageComponent {
    let text: String
    public init(_ text: String) { self.text = text }
    public func apply(to m: inout Message) { m.subject = text }
}

/// The plain-text body (``Message/text``).
public struct TextBody: MessageComponent {
    let text: String
    public init(_ text: String) { self.text = text }
    public func apply(to m: inout Message) { m.text = text }
}

/// The HTML body (``Message/html``).
public struct HTMLBody: MessageComponent {
    let html: String
    public init(_ html: String) { self.html = html }
    public func apply(to m: inout Message) { m.html = html }
}

extension Attachment: MessageComponent {
    public func apply(to m: inout Message) { m.attachments.append(self) }
}

extension Header: MessageComponent {
    public func apply(to m: inout Message) { m.headers.append(self) }
}
