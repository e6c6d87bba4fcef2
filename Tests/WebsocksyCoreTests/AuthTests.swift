import Glibc
import Testing
@testable import WebsocksyCore

@Suite struct Base64URLTests {
    @Test func roundTripsEveryLength() {
        for length in 0..<40 {
            let bytes = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
            let text = Base64URL.encode(bytes)
            #expect(!text.contains("=") && !text.contains("+") && !text.contains("/"))
            #expect(Base64URL.decode(Array(text.utf8)) == bytes)
        }
    }

    @Test func refusesEverySecondSpelling() {
        #expect(Base64URL.decode(Array("QQ==".utf8)) == nil)      // padding
        #expect(Base64URL.decode(Array("QR".utf8)) == nil)        // unused bits set ("QQ" is canonical)
        #expect(Base64URL.decode(Array("QQ".utf8)) == [0x41])
        #expect(Base64URL.decode(Array("Q".utf8)) == nil)         // 1 mod 4
        #expect(Base64URL.decode(Array("a+b/".utf8)) == nil)      // standard alphabet
        #expect(Base64URL.decode(Array("ab c".utf8)) == nil)
    }
}

@Suite struct JSONParserTests {
    private func parse(_ text: String) -> JSONValue? { JSONParser.parse(Array(text.utf8)) }

    @Test func parsesWhatClaimSetsHold() {
        let value = parse(#" {"sub":"al\u00e9\ud83d\ude00","n":-1.5e3,"ok":true,"z":null,"a":[1,"x",{}]} "#)
        guard case .object(let o) = value else { Issue.record("not an object"); return }
        #expect(o["sub"] == .string("alé😀"))
        #expect(o["n"]?.number == -1500 && o["n"]?.scalarText == "-1.5e3")
        #expect(o["ok"]?.scalarText == "true")
        #expect(o["z"] == .null && o["z"]?.scalarText == nil)
        #expect(o["a"]?.scalarText == nil)
    }

    @Test func refusesMalformedAndAmbiguousDocuments() {
        for bad in [#"{"a":1,"a":2}"#, "{", #"{"a":1,}"#, "[1,]", "01", "1.", "-", "+1", #""\x""#, "\"\u{01}\"",
                    #""\ud800""#, #""\udc00x""#, "tru", "nul", #"{"a" 1}"#, "1 2", "NaN", "1e999", ""] {
            #expect(parse(bad) == nil, "\(bad)")
        }
        #expect(JSONParser.parse([0x22, 0xFF, 0x22]) == nil)  // invalid UTF-8
        let deep = String(repeating: "[", count: 40) + String(repeating: "]", count: 40)
        #expect(parse(deep) == nil)
    }
}

@Suite struct JSONWebTokenTests {
    /// RFC 7515 appendix A.1: HS256 with this 64-byte key.
    static let rfcToken = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    static let rfcKey = Base64URL.decode(Array("AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow".utf8))!

    private func token(_ text: String) -> JSONWebToken? {
        if case .success(let token) = JSONWebToken.parse(text) { return token }
        return nil
    }

    @Test func verifiesTheRFCExample() throws {
        let parsed = try #require(token(Self.rfcToken))
        #expect(parsed.algorithm == .HS256)
        #expect(parsed.claims["iss"] == .string("joe"))
        let keys = TokenKeys(entries: [.init(keyID: nil, algorithm: nil, material: .secret(Self.rfcKey))])
        #expect(keys.verify(parsed) == nil)
        var wrong = Self.rfcKey
        wrong[0] ^= 1
        #expect(TokenKeys(entries: [.init(keyID: nil, algorithm: nil, material: .secret(wrong))]).verify(parsed) == TokenRefusal("bad signature"))
    }

    @Test func everyAlteredByteFailsVerification() throws {
        let keys = TokenKeys(entries: [.init(keyID: nil, algorithm: nil, material: .secret(Self.rfcKey))])
        let bytes = Array(Self.rfcToken.utf8)
        for index in bytes.indices where bytes[index] != UInt8(ascii: ".") {
            var altered = bytes
            altered[index] = altered[index] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
            if case .success(let token) = JSONWebToken.parse(String(decoding: altered, as: UTF8.self)) {
                #expect(keys.verify(token) != nil, "byte \(index)")
            }
        }
    }

    @Test func refusesAlgNoneCritJWEAndOversizedTokens() {
        func header(_ json: String) -> String { Base64URL.encode(Array(json.utf8)) + "." + Base64URL.encode(Array("{}".utf8)) + "." }
        #expect(token(header(#"{"alg":"none"}"#)) == nil)
        #expect(token(header(#"{"alg":"HS256","crit":["b64"]}"#) + "AA") == nil)
        #expect(token(header(#"{"typ":"JWT"}"#) + "AA") == nil)
        #expect(token(header(#"{"alg":"HS256","kid":7}"#) + "AA") == nil)
        #expect(token("a.b.c.d.e") == nil)
        #expect(token(String(repeating: "A", count: JSONWebToken.maxLength + 1)) == nil)
        #expect(token(header(#"{"alg":"HS256"}"#) + "AA") != nil)
    }

    @Test func anHMACTokenIsNeverCheckedWithAPublicKeyAsSecret() throws {
        // Algorithm confusion: the public key's PEM text as an HMAC secret. With no secret
        // configured there is no key for HS256 at all.
        let keys = TokenKeys(entries: [])
        let parsed = try #require(token(Self.rfcToken))
        #expect(keys.verify(parsed) == TokenRefusal("no key for algorithm HS256"))
    }
}

@Suite struct TokenPolicyTests {
    @Test func timesIssuerAndAudience() {
        var policy = TokenPolicy()
        policy.leeway = 10
        #expect(policy.check(["exp": .number(1000, text: "1000")], now: 1009) == nil)
        #expect(policy.check(["exp": .number(1000, text: "1000")], now: 1010) == TokenRefusal("token expired"))
        #expect(policy.check([:], now: 0) == TokenRefusal("token has no exp"))
        #expect(policy.check(["exp": .string("soon")], now: 0) == TokenRefusal("exp is not a number"))
        let exp: [String: JSONValue] = ["exp": .number(5000, text: "5000")]
        #expect(policy.check(exp.merging(["nbf": .number(1010, text: "1010")]) { a, _ in a }, now: 1000) == nil)
        #expect(policy.check(exp.merging(["nbf": .number(1011, text: "1011")]) { a, _ in a }, now: 1000) != nil)
        policy.requireExpiry = false
        #expect(policy.check([:], now: 0) == nil)
        policy.issuer = "https://idp"
        policy.audiences = ["gw", "gw2"]
        #expect(policy.check(["iss": .string("https://idp"), "aud": .string("gw2")], now: 0) == nil)
        #expect(policy.check(["iss": .string("https://idp"), "aud": .array([.string("x"), .string("gw")])], now: 0) == nil)
        #expect(policy.check(["iss": .string("https://idp"), "aud": .string("other")], now: 0) != nil)
        #expect(policy.check(["aud": .string("gw")], now: 0) != nil)
    }
}

@Suite struct TokenSourceTests {
    private func request(_ target: String, _ headers: [(String, String)] = [], protocols: [String] = []) -> HandshakeRequest {
        HandshakeRequest(target: target, headers: HeaderFields(headers.map { (name: $0.0, value: $0.1) }), key: "", protocols: protocols)
    }

    @Test func takesTheFirstConfiguredPlaceAndRemovesTheQueryParameter() {
        var r = request("/vnc?a=1&token=abc%2Edef&b=2", [("Cookie", "x=1; token=\"fromcookie\""), ("Authorization", "Bearer  fromheader")])
        #expect(TokenSource.take(from: &r, sources: TokenSource.defaults) == "abc.def")
        #expect(r.target == "/vnc?a=1&b=2")
        var c = request("/vnc", [("Cookie", "x=1; token=\"fromcookie\""), ("Authorization", "Bearer  fromheader")])
        #expect(TokenSource.take(from: &c, sources: TokenSource.defaults) == "fromcookie")
        #expect(TokenSource.take(from: &c, sources: [.bearer]) == "fromheader")
        #expect(TokenSource.take(from: &c, sources: [.query("token")]) == nil)
        var only = request("/?token=t")
        #expect(TokenSource.take(from: &only, sources: [.query("token")]) == "t" && only.target == "/")
    }

    @Test func subprotocolEntriesAreNeverLeftForSelection() {
        var r = request("/", protocols: ["chat", "access_token.abc.def", "access_token.second"])
        #expect(TokenSource.take(from: &r, sources: [.subprotocol(prefix: "access_token.")]) == "abc.def")
        #expect(r.protocols == ["chat"])
        var notUsed = request("/?token=q", protocols: ["access_token.x"])
        #expect(TokenSource.take(from: &notUsed, sources: [.query("token"), .subprotocol(prefix: "access_token.")]) == "q")
        #expect(notUsed.protocols.isEmpty)
    }

    @Test func parsesConfiguration() {
        #expect(TokenSource.parse(" Bearer ") == .bearer)
        #expect(TokenSource.parse("query:access_token") == .query("access_token"))
        #expect(TokenSource.parse("protocol:tok.") == .subprotocol(prefix: "tok."))
        #expect(TokenSource.parse("header:x") == nil)
        #expect(TokenSource.parse("cookie:") == nil)
        #expect(TokenSource.parse("cookie:a;b") == nil)
    }
}

@Suite struct PeerAllowListTests {
    private func list(_ entries: String...) throws -> PeerAllowList {
        var list = PeerAllowList()
        for entry in entries { try list.add(entry) }
        return list
    }

    private func allowed(_ list: PeerAllowList, _ peer: String) throws -> Bool {
        if case .allowed = list.decide(try PeerAddress.parse(peer)) { return true }
        return false
    }

    @Test func networksAndPortRanges() throws {
        let l = try list("tcp://10.0.0.0/8:5900-5999", "udp://[fd00::]/8:53", "tls://192.0.2.7:*")
        #expect(try allowed(l, "tcp://10.0.0.0:5900"))
        #expect(try allowed(l, "tcp://10.255.255.255:5999"))
        #expect(try !allowed(l, "tcp://11.0.0.0:5900"))
        #expect(try !allowed(l, "tcp://10.0.0.1:5899"))
        #expect(try !allowed(l, "tcp://10.0.0.1:6000"))
        #expect(try !allowed(l, "udp://10.0.0.1:5900"))   // scheme must match
        #expect(try allowed(l, "udp://[fd12::1]:53"))
        #expect(try !allowed(l, "udp://[fe00::1]:53"))
        #expect(try allowed(l, "tls://192.0.2.7:1"))
        #expect(try !allowed(l, "tcp://192.0.2.7:1"))
        #expect(try !allowed(l, "echo://"))
    }

    @Test func hostNamesAreAllowedByNameOrByWhatTheyResolveTo() throws {
        let l = try list("tcp://VNC.internal:5900", "tcp://127.0.0.0/8:*")
        #expect(try allowed(l, "tcp://vnc.internal.:5900"))
        #expect(try !allowed(l, "tcp://vnc.internal:5901") == true)
        guard case .allowedIfResolvedInside(let check) = l.decide(try PeerAddress.parse("tcp://localhost:80")) else {
            Issue.record("a name not listed should depend on its addresses")
            return
        }
        #expect(check([127, 0, 0, 1]) && !check([10, 0, 0, 1]))
        let none = try list("tcp://10.0.0.0/8:22")
        if case .refused = none.decide(try PeerAddress.parse("tcp://localhost:80")) {} else { Issue.record("no network for that port") }
    }

    @Test func unixDirectoriesAndPaths() throws {
        let l = try list("unix:///run/vnc/", "unix:/run/app.sock", "unix-dgram:///run/dns/")
        #expect(try allowed(l, "unix:///run/vnc/a.sock"))
        #expect(try allowed(l, "unix:///run/app.sock"))
        #expect(try !allowed(l, "unix:///run/vnc/../secret.sock"))
        #expect(try !allowed(l, "unix:///run/vnc/./a"))
        #expect(try !allowed(l, "unix:///run/vnc/"))
        #expect(try !allowed(l, "unix:///run/vncx/a"))
        #expect(try !allowed(l, "unix-dgram:///run/vnc/a.sock"))
        #expect(try allowed(l, "unix-dgram:///run/dns/q"))
    }

    @Test func refusesMalformedEntries() {
        for bad in ["tcp://10.0.0.1/8:1", "tcp://10.0.0.0/8", "tcp://10.0.0.0/8:0", "tcp://h:9-1", "ftp://h:1", "unix:relative", "unix:///a/../b"] {
            #expect(PeerAllowList.parse(bad) == nil, "\(bad)")
        }
    }
}

@Suite struct PasswordFileTests {
    @Test func refusesWeakHashesWithTheirLine() {
        for (hash, word) in [("$apr1$abc$def", "MD5"), ("{SHA}abc=", "SHA-1"), ("secret", "plain-text"), ("$md5$x$y", "$md5$")] {
            do {
                _ = try PasswordFile.parse("# users\nalice:\(hash)\n", path: "/etc/pw")
                Issue.record("\(hash) accepted")
            } catch {
                #expect(error.description.hasPrefix("/etc/pw:2:") && error.description.contains(word), "\(error)")
            }
        }
    }

    @Test func checksSHACryptHashes() throws {
        // `openssl passwd -6 -salt saltsalt secret`
        let file = try PasswordFile.parse("bob:$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1\n", path: "f")
        #expect(file.check(user: "bob", password: "secret"))
        #expect(!file.check(user: "bob", password: "Secret"))
        #expect(!file.check(user: "eve", password: "secret"))
    }

    @Test func basicCredentials() {
        #expect(BasicCredentials.parse("Basic Ym9iOnM6ZWNyZXQ=") == .credentials(user: "bob", password: "s:ecret"))
        #expect(BasicCredentials.parse(nil) == .missing)
        #expect(BasicCredentials.parse("Bearer x") == .missing)
        #expect(BasicCredentials.parse("Basic Ym9i") == .malformed)      // no colon
        #expect(BasicCredentials.parse("Basic Ym9iOnM=x") == .malformed)
    }
}
