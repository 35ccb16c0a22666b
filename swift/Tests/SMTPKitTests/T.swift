import XCTest
@testable import SMTPKit
final class T: XCTestCase { func testX() { XCTAssertFalse(_probeLink().isEmpty) } }
