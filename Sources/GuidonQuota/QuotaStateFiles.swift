#if canImport(Glibc)
import Glibc
#endif

/// The embedded store's files under its state directory:
/// - `quota.snapshot`: every live count and remembered answer, written whole (temporary file,
///   fsync, rename, fsync of the directory) when the log has grown;
/// - `quota.log`: the records written since, appended in frames of
///   `"GQL1" | payload length (u32) | CRC-32 of the payload (u32) | payload`.
///
/// Recovery reads the snapshot, then the log's frames up to the first one that is torn or
/// fails its checksum (the tail of a write cut short; it is cut off). A damaged snapshot is an
/// error: starting with no counts would silently grant what was already used.
///
/// Used by the flusher thread only (and by `start` before it runs).
struct QuotaStateFiles {
    let directory: String
    private(set) var logFD: Int32 = -1
    private(set) var logBytes = 0
    private(set) var snapshotBytes = 0

    static let logMagic: [UInt8] = Array("GQL1".utf8)
    static let snapshotMagic: [UInt8] = Array("GQS1".utf8)

    var logPath: String { directory + "/quota.log" }
    var snapshotPath: String { directory + "/quota.snapshot" }

    init(directory: String) { self.directory = directory }

    /// Creates the directory if needed, reads the snapshot and the log (calling `apply` for each
    /// record in order), cuts a torn tail off the log and opens it for appending.
    /// Returns what was cut off, in bytes (0 normally).
    /// `sizeHint` is told the bytes about to be read (to reserve room for what they hold).
    mutating func open(sizeHint: (Int) -> Void = { _ in }, apply: (QuotaRecord) -> Void) throws(QuotaStoreError) -> Int {
        if mkdir(directory, 0o700) != 0 && errno != EEXIST {
            throw QuotaStoreError(.stateUnwritable, "cannot create the quota state directory \(directory): \(String(cString: strerror(errno)))")
        }
        let snapshot = try readFile(snapshotPath)
        let log = try readFile(logPath) ?? []
        sizeHint((snapshot?.count ?? 0) + log.count)
        if let snapshot {
            snapshotBytes = snapshot.count
            let result: Result<Void, QuotaStoreError> = snapshot.withUnsafeBytes { raw in Result { () throws(QuotaStoreError) in
                guard raw.count >= 12, raw.prefix(4).elementsEqual(Self.snapshotMagic) else {
                    throw QuotaStoreError(.stateUnreadable, "\(snapshotPath) is not a quota snapshot (bad header); move it away to start with no counts")
                }
                let length = Int(raw.loadUnaligned(fromByteOffset: 4, as: UInt32.self).littleEndian)
                let crc = raw.loadUnaligned(fromByteOffset: 8, as: UInt32.self).littleEndian
                let payload = UnsafeRawBufferPointer(rebasing: raw[12...])
                guard payload.count == length, CRC32.checksum(payload) == crc else {
                    throw QuotaStoreError(.stateUnreadable, "\(snapshotPath) is damaged (length or checksum mismatch); move it away to start with no counts")
                }
                var reader = QuotaRecordReader(payload)
                do throws(QuotaRecordReader.Malformed) {
                    while let record = try reader.next() { apply(record) }
                } catch {
                    throw QuotaStoreError(.stateUnreadable, "\(snapshotPath): \(error.message)")
                }
            } }
            try result.get()
        }
        var cut = 0
        var valid = 0
        log.withUnsafeBytes { raw in
            while raw.count - valid >= 12, raw[valid..<valid + 4].elementsEqual(Self.logMagic) {
                let length = Int(raw.loadUnaligned(fromByteOffset: valid + 4, as: UInt32.self).littleEndian)
                let crc = raw.loadUnaligned(fromByteOffset: valid + 8, as: UInt32.self).littleEndian
                guard raw.count - valid - 12 >= length else { break }
                let payload = UnsafeRawBufferPointer(rebasing: raw[(valid + 12)..<(valid + 12 + length)])
                guard CRC32.checksum(payload) == crc else { break }
                var reader = QuotaRecordReader(payload)
                var records: [QuotaRecord] = []
                do {
                    while let record = try reader.next() { records.append(record) }
                } catch {
                    break
                }
                records.forEach(apply)
                valid += 12 + length
            }
        }
        cut = log.count - valid
        logFD = Glibc.open(logPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard logFD >= 0 else {
            throw QuotaStoreError(.stateUnwritable, "cannot open \(logPath): \(String(cString: strerror(errno)))")
        }
        if cut > 0 { ftruncate(logFD, off_t(valid)) }
        logBytes = valid
        return cut
    }

    /// Appends one frame holding `payload`; with `sync`, waits until it is on disk.
    mutating func append(_ payload: [UInt8], sync: Bool) throws(QuotaStoreError) {
        var frame: [UInt8] = []
        frame.reserveCapacity(payload.count + 12)
        frame += Self.logMagic
        frame.appendLE(UInt32(payload.count))
        frame.appendLE(payload.withUnsafeBytes { CRC32.checksum($0) })
        frame += payload
        do throws(QuotaStoreError) {
            try writeAll(logFD, frame, path: logPath)
        } catch {
            // Never leave half a frame: recovery would stop there and lose every later one.
            ftruncate(logFD, off_t(logBytes))
            throw error
        }
        if sync { fdatasync(logFD) }
        logBytes += frame.count
    }

    /// Replaces the snapshot with `payload` (the records of every live count) and empties the log.
    mutating func writeSnapshot(_ payload: [UInt8]) throws(QuotaStoreError) {
        var file: [UInt8] = Self.snapshotMagic
        file.appendLE(UInt32(payload.count))
        file.appendLE(payload.withUnsafeBytes { CRC32.checksum($0) })
        file += payload
        let temporary = snapshotPath + ".tmp"
        let fd = Glibc.open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw QuotaStoreError(.stateUnwritable, "cannot create \(temporary): \(String(cString: strerror(errno)))") }
        do throws(QuotaStoreError) {
            try writeAll(fd, file, path: temporary)
        } catch {
            Glibc.close(fd)
            throw error
        }
        fsync(fd)
        Glibc.close(fd)
        guard rename(temporary, snapshotPath) == 0 else {
            throw QuotaStoreError(.stateUnwritable, "cannot rename \(temporary): \(String(cString: strerror(errno)))")
        }
        let dir = Glibc.open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dir >= 0 {
            fsync(dir)
            Glibc.close(dir)
        }
        // The snapshot holds everything the log did: replaying the old log over it (should we
        // die before this truncation) only rewrites the same absolute counts.
        ftruncate(logFD, 0)
        fdatasync(logFD)
        logBytes = 0
        snapshotBytes = file.count
    }

    mutating func close() {
        if logFD >= 0 { Glibc.close(logFD) }
        logFD = -1
    }

    private func readFile(_ path: String) throws(QuotaStoreError) -> [UInt8]? {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT { return nil }
            throw QuotaStoreError(.stateUnreadable, "cannot open \(path): \(String(cString: strerror(errno)))")
        }
        defer { Glibc.close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw QuotaStoreError(.stateUnreadable, "cannot read \(path): \(String(cString: strerror(errno)))") }
            if n == 0 { return bytes }
            bytes += chunk[0..<n]
        }
    }

    private func writeAll(_ fd: Int32, _ bytes: [UInt8], path: String) throws(QuotaStoreError) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 {
                if errno == EINTR { continue }
                throw QuotaStoreError(.stateUnwritable, "cannot write \(path): \(String(cString: strerror(errno)))")
            }
            offset += n
        }
    }
}
