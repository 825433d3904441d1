import GuidonJSON

#if canImport(Glibc)
import Glibc
#endif

/// Who is at the other end of a Unix socket, as the kernel says (`SO_PEERCRED`): the process and
/// user that connected, for the audit log. Not what the client claims (`by`), which is recorded
/// next to it.
struct Peer: Sendable, Hashable {
    var pid: Int32
    var uid: UInt32
    var gid: UInt32
    /// The user's name, when the user database knows it.
    var user: String?

    /// The credentials of the process that connected `fd`, or `nil` when the kernel has none
    /// (not a Unix socket).
    /// With `named` false the user's name is left out, to be looked up later off an event loop
    /// (the user database may be remote): see `named()`.
    static func of(_ fd: Int32, named: Bool = true) -> Peer? {
        // struct ucred { pid_t pid; uid_t uid; gid_t gid; } (Linux; Glibc's module leaves it out).
        var credentials: (Int32, UInt32, UInt32) = (0, 0, 0)
        var length = socklen_t(MemoryLayout<(Int32, UInt32, UInt32)>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) == 0, length >= 12 else { return nil }
        let peer = Peer(pid: credentials.0, uid: credentials.1, gid: credentials.2, user: nil)
        return named ? peer.named() : peer
    }

    /// This peer with its user's name.
    func named() -> Peer {
        var peer = self
        if peer.user == nil { peer.user = Self.userName(uid) }
        return peer
    }

    /// The name of `uid` (`getpwuid_r`; a rare call, only for admin connections and refused writes).
    static func userName(_ uid: UInt32) -> String? {
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 4096)
        let status = buffer.withUnsafeMutableBufferPointer { getpwuid_r(uid, &entry, $0.baseAddress!, $0.count, &result) }
        guard status == 0, result != nil, let name = entry.pw_name else { return nil }
        return String(cString: name)
    }

    var json: JSONValue {
        var o: JSONObject = ["uid": .int(Int64(uid))]
        if let user { o["user"] = .string(user) }
        o["pid"] = .int(Int64(pid))
        return .object(o)
    }

    /// `maria (uid 1000, pid 4242)`.
    var description: String { "\(user ?? "uid \(uid)") (uid \(uid), pid \(pid))" }
}
