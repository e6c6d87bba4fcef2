import Testing
@testable import WebsocksyCore

@Suite struct ProgramAddressTests {
    @Test func execAddressesCarryDecodedArguments() throws {
        let address = try PeerAddress.parse("exec:///usr/bin/awk?-F%2C&%7Bprint%20%242%7D&a+b&")
        #expect(address == .program(path: "/usr/bin/awk", arguments: ["-F,", "{print $2}", "a+b", ""]))
        // The description escapes what would change the meaning, and reads back the same.
        #expect(try PeerAddress.parse(address.description) == address)
        #expect(try PeerAddress.parse("exec:///bin/cat") == .program(path: "/bin/cat", arguments: []))
    }

    @Test func execAddressesNeedAnAbsolutePathAndGoodEscapes() {
        for bad in ["exec://cat", "exec:///", "exec://", "exec:///bin/echo?%zz", "exec:///bin/echo?%ff"] {
            #expect(throws: PeerAddressError.self, "\(bad)") { try PeerAddress.parse(bad) }
        }
    }

    @Test func fifoAndStandardInput() throws {
        #expect(try PeerAddress.parse("fifo:///run/ws/in?out=/run/ws/out") == .fifo(path: "/run/ws/in", out: "/run/ws/out"))
        #expect(try PeerAddress.parse("fifo-out:///run/ws/out") == .fifoOut(path: "/run/ws/out"))
        #expect(try PeerAddress.parse("stdin://") == .standardInput)
        #expect(try PeerAddress.parse("fifo:///a").isInherentlyShared)
        #expect(try !PeerAddress.parse("tcp://h:1").isInherentlyShared)
        #expect(throws: PeerAddressError.self) { try PeerAddress.parse("fifo:///a?in=/b") }
        #expect(throws: PeerAddressError.self) { try PeerAddress.parse("fifo-out:///a?out=/b") }
        #expect(throws: PeerAddressError.self) { try PeerAddress.parse("stdin://x") }
    }
}

@Suite struct ProgramEnvironmentTests {
    @Test func cgiVariablesAndOnlyTheNamedOnesOfOurs() {
        let request = ProgramEnvironment.Request(
            target: "/chat/room?x=1&y=2", headers: [("Host", "gw.example:8443"), ("X-Trace-Id", "abc"), ("x-trace-id", "second"), ("Bad Name", "v")],
            clientIP: "203.0.113.7", clientPort: "5123", serverPort: "8443", subprotocol: "chat", user: "alice")
        let ours = ["HOME": "/root", "SECRET": "s3cret", "LANG": "C.UTF-8"]
        let variables = ProgramEnvironment.variables(request, passing: ["LANG"]) { ours[$0] }
        for expected in ["PATH_INFO=/chat/room", "QUERY_STRING=x=1&y=2", "REQUEST_URI=/chat/room?x=1&y=2", "SERVER_NAME=gw.example",
                         "SERVER_PORT=8443", "REMOTE_ADDR=203.0.113.7", "REMOTE_PORT=5123", "WEBSOCKET_PROTOCOL=chat",
                         "REMOTE_USER=alice", "HTTP_HOST=gw.example:8443", "HTTP_X_TRACE_ID=abc", "LANG=C.UTF-8",
                         "PATH=\(ProgramEnvironment.defaultPath)", "REQUEST_METHOD=GET"] {
            #expect(variables.contains(expected), "\(expected)")
        }
        #expect(!variables.contains { $0.hasPrefix("HOME=") || $0.hasPrefix("SECRET=") || $0.contains("Bad") })
        #expect(!variables.contains("HTTP_X_TRACE_ID=second"))
    }

    @Test func aPassedPathReplacesTheDefaultAndNULsAreLeftOut() {
        let request = ProgramEnvironment.Request(target: "/", headers: [("X-A", "a\u{0}b")], clientIP: nil, clientPort: nil,
                                                 serverPort: "1", subprotocol: nil, user: nil)
        let variables = ProgramEnvironment.variables(request, passing: ["PATH"]) { $0 == "PATH" ? "/opt/bin" : nil }
        #expect(variables.filter { $0.hasPrefix("PATH=") } == ["PATH=/opt/bin"])
        #expect(!variables.contains { $0.hasPrefix("HTTP_X_A=") })
    }
}

@Suite struct SharingSettingsTests {
    @Test func shareOptionSpellings() {
        #expect(SharingSettings.mode("off") == .some(nil))
        #expect(SharingSettings.mode("broadcast") == .some(.broadcast))
        #expect(SharingSettings.mode("readonly") == .some(.readonly))
        #expect(SharingSettings.mode("on") == nil)
    }

    @Test func routeOptions() {
        let options = PeerOptions()
        #expect(options.set("share", "readonly") == nil)
        #expect(options.set("slow-client", "close") == nil)
        #expect(options.set("share", "yes") != nil)
        #expect(options.set("slow-client", "later") != nil)
        if case .some(.some(let settings)) = options.sharing { #expect(settings.mode == .readonly) } else { Issue.record("share not set") }
        #expect(options.slowClient == .close)
    }
}

@Suite struct ProgramAllowListTests {
    @Test func execEntriesNameExactPrograms() throws {
        var list = PeerAllowList()
        try list.add("exec:///usr/bin/cat")
        func allowed(_ text: String) throws -> Bool {
            if case .allowed = list.decide(try PeerAddress.parse(text)) { return true }
            return false
        }
        #expect(try allowed("exec:///usr/bin/cat?-n"))
        #expect(try !allowed("exec:///usr/bin/tac"))
        #expect(try !allowed("exec:///usr/bin/../bin/cat"))
        #expect(try !allowed("fifo:///tmp/x"))
        #expect(try !allowed("stdin://"))
        #expect(PeerAllowList.parse("exec:///usr/bin/cat?-n") == nil)
    }
}
