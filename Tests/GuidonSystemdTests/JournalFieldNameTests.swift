import Testing

@testable import GuidonSystemd

@Suite("journald field names")
struct JournalFieldNameTests {
    @Test("metadata keys become GUIDON_ fields", arguments: [
        ("configVersion", "GUIDON_CONFIG_VERSION"),
        ("configPath", "GUIDON_CONFIG_PATH"),
        ("flag", "GUIDON_FLAG"),
        ("reloadResult", "GUIDON_RELOAD_RESULT"),
        ("GUIDON_FLAG", "GUIDON_FLAG"),
        ("peer.uid", "GUIDON_PEER_UID"),
    ])
    func fieldName(key: String, field: String) {
        #expect(JournalLogHandler.fieldName(key) == field)
    }

    @Test("a status stays one line")
    func sanitizedStatus() {
        #expect(SystemdNotifier.sanitized("loaded\nREADY=1") == "loaded READY=1")
    }
}
