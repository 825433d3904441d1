import Testing

@testable import GuidonEntitlements

@Suite struct TimestampTests {
    @Test(arguments: [
        ("1970-01-01T00:00:00Z", Int64(0)),
        ("2027-06-30T00:00:00Z", 1_814_313_600),
        ("2027-06-30t02:00:00+02:00", 1_814_313_600),
        ("2027-06-29T19:30:00-04:30", 1_814_313_600),
        ("2027-06-30T00:00:00.999z", 1_814_313_600),
        ("2024-02-29T12:00:00Z", 1_709_208_000),
        ("2016-12-31T23:59:60Z", 1_483_228_800),
        ("1969-12-31T23:59:59Z", -1),
        ("0001-01-01T00:00:00Z", -62_135_596_800),
    ])
    func parses(_ text: String, _ seconds: Int64) {
        #expect(Timestamp.parse(text) == seconds)
    }

    @Test(arguments: [
        "", "2027-06-30", "2027-06-30T00:00Z", "2027-06-30T00:00:00", "2027-06-30 00:00:00Z", "2027-13-01T00:00:00Z",
        "2027-02-29T00:00:00Z", "2100-02-29T00:00:00Z", "2027-06-31T00:00:00Z", "2027-06-30T24:00:00Z", "2027-06-30T00:60:00Z",
        "2027-06-30T00:00:61Z", "2027-06-30T00:00:00.Z", "2027-06-30T00:00:00+2:00", "2027-06-30T00:00:00+24:00",
        "2027-06-30T00:00:00Z ", "27-06-30T00:00:00Z", "2027-６-30T00:00:00Z",
    ])
    func rejects(_ text: String) {
        #expect(Timestamp.parse(text) == nil)
    }

    @Test func writesUTC() {
        #expect(Timestamp.string(1_814_313_600) == "2027-06-30T00:00:00Z")
        #expect(Timestamp.string(-1) == "1969-12-31T23:59:59Z")
        #expect(Timestamp.string(1_709_208_000) == "2024-02-29T12:00:00Z")
        for seconds: Int64 in stride(from: -5_000_000_000, to: 5_000_000_000, by: 86_399_997) {
            #expect(Timestamp.parse(Timestamp.string(seconds)) == seconds)
        }
    }
}
