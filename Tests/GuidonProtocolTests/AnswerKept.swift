import GuidonEngine
import GuidonProtocol
import Testing

/// Answers one `eval` line as a connection does: decoded into the `request` it keeps, evaluated
/// against `snapshot` (lent, as `Snapshot.withResult` lends it), the reply appended to `out`. A refused line is a test failure.
func answerKept(
    _ line: [UInt8], parser: RequestParser, request: inout Request, snapshot: Snapshot, out: inout [UInt8]
) {
    line.withUnsafeBytes { raw in
        do throws(RequestError) {
            try parser.parse(raw, into: &request)
            let (id, defaultValue) = (request.id, request.defaultValue)
            snapshot.withResult(request.flag ?? "", context: request.context, type: request.type, now: 1_750_000_000) {
                ReplyEncoder.eval(id: id, result: $0, default: defaultValue, into: &out)
            }
        } catch {
            Issue.record("refused: \(error)")
        }
    }
}
