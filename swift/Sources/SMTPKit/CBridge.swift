// What the Swift layer needs to talk to the C library: strings out of
// fixed-size C arrays, and C strings that live for one call.
import CSMTPKit
import Foundation

/// The text of a NUL-terminated `char[N]` member of a C struct (Swift sees
/// such an array as a tuple of `CChar`).
func string<T>(fromCArray tuple: T) -> String {
    withUnsafeBytes(of: tuple) { raw in
        let bytes = raw.bindMemory(to: UInt8.self)
        let end = bytes.firstIndex(of: 0) ?? bytes.count
        return String(decoding: bytes[..<end], as: UTF8.self)
    }
}

/// Copies `s` into a `char[N]` member of a C struct, cut to fit, NUL
/// terminated.
func copy<T>(_ s: String, into tuple: inout T) {
    withUnsafeMutableBytes(of: &tuple) { raw in
        guard raw.count > 0 else { return }
        let bytes = Array(s.utf8.prefix(raw.count - 1))
        raw.copyBytes(from: bytes)
        raw[bytes.count] = 0
    }
}

/// The text of a NUL-terminated C string written into `buffer` (the whole
/// buffer when it has no NUL).
func string(fromCBuffer buffer: [CChar]) -> String {
    let end = buffer.firstIndex(of: 0) ?? buffer.count
    return String(decoding: buffer[..<end].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Copies of Swift strings as C strings, freed when the holder goes away:
/// for C calls that take several `const char *` at once (the C side copies
/// what it keeps).
final class CStrings {
    private var pointers: [UnsafeMutablePointer<CChar>] = []

    /// A C copy of `s` (nil for nil), alive as long as this holder.
    func add(_ s: String?) -> UnsafePointer<CChar>? {
        guard let s else { return nil }
        guard let p = strdup(s) else { return nil }
        pointers.append(p)
        return UnsafePointer(p)
    }

    deinit {
        for p in pointers {
            // Passwords and tokens pass through here: wipe before freeing.
            memset(p, 0, strlen(p))
            free(p)
        }
    }
}

/// nil for an empty string (an absent enhanced status or queue ID).
func nonEmpty(_ s: String) -> String? { s.isEmpty ? nil : s }
