import CLinux
import Glibc
import Testing
@testable import WebsocksyCore

@Suite struct ListenerTests {
    /// Accepted sockets get TCP_NODELAY from the listening socket, with no setsockopt of their own.
    @Test func acceptedSocketsInheritNoDelay() throws {
        let listener = try Listener(host: "127.0.0.1", port: "0", unixMode: 0o600) { _, _ in }
        defer { close(listener.fd) }
        #expect(listener.acceptsWithNoDelay)
        let port = listener.boundDescription.split(separator: ":").last.map(String.init) ?? ""
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        #expect(getaddrinfo("127.0.0.1", port, &hints, &list) == 0)
        defer { freeaddrinfo(list) }
        let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(client) }
        #expect(connect(client, list!.pointee.ai_addr, list!.pointee.ai_addrlen) == 0)
        // TCP_DEFER_ACCEPT holds the connection back until its first bytes.
        #expect(send(client, "GET", 3, 0) == 3)
        var pollfd = Glibc.pollfd(fd: listener.fd, events: Int16(POLLIN), revents: 0)
        #expect(poll(&pollfd, 1, 5000) == 1)
        let accepted = accept(listener.fd, nil, nil)
        defer { close(accepted) }
        #expect(accepted >= 0)
        var value: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        #expect(getsockopt(accepted, Int32(IPPROTO_TCP), TCP_NODELAY, &value, &length) == 0)
        #expect(value == 1)
    }

    @Test func unixListenersNeedNoNoDelay() throws {
        let path = "/tmp/websocksy-listener-test-\(getpid()).sock"
        let listener = try Listener(host: "unix:\(path)", port: "0", unixMode: 0o600) { _, _ in }
        defer { close(listener.fd); unlink(path) }
        #expect(!listener.acceptsWithNoDelay)
    }
}
