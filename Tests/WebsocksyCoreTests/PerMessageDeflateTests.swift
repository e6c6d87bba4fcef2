import Testing
@testable import WebsocksyCore

// RFC 7692: negotiation (§7.1), the examples of §7.2.3, and the limits on inflating.

private func offers(_ header: String...) -> [ExtensionOffer] { ExtensionOffer.parse(header) }

private func agree(_ header: String, _ settings: DeflateSettings = DeflateSettings()) -> String? {
    DeflateParameters.negotiate(offers(header), settings: settings)?.responseHeader
}

private func settings(_ change: (inout DeflateSettings) -> Void) -> DeflateSettings {
    var s = DeflateSettings()
    s.serverMaxWindowBits = 15
    s.clientMaxWindowBits = 15
    change(&s)
    return s
}

/// A session with permessage-deflate agreed on `parameters`.
private func compressedSession(_ parameters: DeflateParameters = wideOpen, max: UInt64 = 16 << 20) -> WebSocketSession {
    WebSocketSession(maxMessageSize: max, compression: PerMessageDeflate(parameters: parameters, pool: CompressionPool(settings: DeflateSettings())))
}

private let wideOpen = DeflateParameters(serverNoContextTakeover: false, clientNoContextTakeover: false,
                                         serverMaxWindowBits: 15, announceServerWindow: false, clientMaxWindowBits: nil)

/// Everything a compressor emits for one message, as (payload, first, last) frames.
private func compress(_ deflate: PerMessageDeflate, _ message: [UInt8]) -> [([UInt8], Bool, Bool)]? {
    var frames: [([UInt8], Bool, Bool)] = []
    let compressed = message.withUnsafeBytes { bytes in
        deflate.compress(bytes) { chunk, first, last in frames.append((Array(chunk), first, last)) }
    }
    return compressed ? frames : nil
}

private func deliveredText(_ actions: [SessionAction]) -> [UInt8] {
    actions.reduce(into: []) { out, action in if case .deliver(let p, _, _, _) = action { out += p } }
}

@Suite struct ExtensionOfferParsing {
    @Test func severalOffersAndExtensionsInOrder() {
        let parsed = offers("foo, permessage-deflate; client_max_window_bits; server_max_window_bits=10", "Permessage-Deflate")
        #expect(parsed.map(\.name) == ["foo", "permessage-deflate", "permessage-deflate"])
        #expect(parsed[1].parameters.map(\.name) == ["client_max_window_bits", "server_max_window_bits"])
        #expect(parsed[1].parameters.map(\.value) == [nil, "10"])
    }

    @Test func quotedValuesAreUnquotedAndMayHoldSeparators() {
        let parsed = offers("permessage-deflate; server_max_window_bits=\"10\", x; a=\"b,c\"")
        #expect(parsed.count == 1, "the second element's quoted value is not a token, so it is dropped")
        #expect(parsed[0].parameters[0].value == "10")
    }

    @Test func malformedElementsAreDroppedNotFatal() {
        #expect(offers("permessage-deflate; =3, ; , permessage-deflate").map(\.name) == ["permessage-deflate"])
        #expect(offers("\"unterminated").isEmpty)
        #expect(offers("permessage-deflate; server_max_window_bits=\"1\\").isEmpty)
    }
}

@Suite struct DeflateNegotiation {
    @Test func plainOfferGetsOurWindowAnnouncedAndNoClientContext() {
        // The client's window cannot be limited without client_max_window_bits in the offer, so
        // it is asked to keep no context rather than have us keep 32 KiB per connection.
        #expect(agree("permessage-deflate") == "permessage-deflate; client_no_context_takeover; server_max_window_bits=11")
        #expect(agree("permessage-deflate", settings { _ in }) == "permessage-deflate")
    }

    @Test func clientWindowIsLimitedOnlyWhenOffered() {
        #expect(agree("permessage-deflate; client_max_window_bits") == "permessage-deflate; server_max_window_bits=11; client_max_window_bits=11")
        #expect(agree("permessage-deflate; client_max_window_bits=9") == "permessage-deflate; server_max_window_bits=11; client_max_window_bits=9")
        #expect(agree("permessage-deflate; client_max_window_bits", settings { _ in }) == "permessage-deflate; client_max_window_bits=15")
    }

    @Test func serverWindowOfferIsHonouredAndAnswered() {
        #expect(agree("permessage-deflate; server_max_window_bits=10", settings { _ in }) == "permessage-deflate; server_max_window_bits=10")
        #expect(agree("permessage-deflate; server_max_window_bits=15; client_max_window_bits") == "permessage-deflate; server_max_window_bits=11; client_max_window_bits=11")
    }

    /// zlib cannot make an 8-bit window; run-length matches only keep every reference within it.
    @Test func eightBitServerWindowIsHonoured() {
        let agreed = DeflateParameters.negotiate(offers("permessage-deflate; server_max_window_bits=8; client_max_window_bits"), settings: DeflateSettings())
        #expect(agreed?.responseHeader == "permessage-deflate; server_max_window_bits=8; client_max_window_bits=11")
        let deflate = PerMessageDeflate(parameters: agreed!, pool: CompressionPool(settings: DeflateSettings()))
        let message = text(String(repeating: "abcdefghij0123456789", count: 200) + String(repeating: "z", count: 500))
        // A receiver with exactly a 256-byte window decodes every message (zlib reports a
        // reference beyond its window as "invalid distance too far back").
        let inflater = Inflater(windowBits: 8)!
        var output = [UInt8](repeating: 0, count: 1 << 16)
        for _ in 0..<3 {
            let frames = compress(deflate, message)!
            #expect(frames.count == 1 && frames[0].0.count < message.count * 3 / 4)
            let step = (frames[0].0 + PerMessageDeflate.tail).withUnsafeBytes { input in
                output.withUnsafeMutableBytes { inflater.inflate(input, into: $0) }
            }
            #expect(step.status == .progress && Array(output[0..<step.produced]) == message)
        }
    }

    @Test func contextTakeoverParameters() {
        #expect(agree("permessage-deflate; server_no_context_takeover; client_no_context_takeover", settings { _ in })
                == "permessage-deflate; server_no_context_takeover; client_no_context_takeover")
        #expect(agree("permessage-deflate", settings { $0.serverContextTakeover = false; $0.clientContextTakeover = false })
                == "permessage-deflate; server_no_context_takeover; client_no_context_takeover")
    }

    @Test func invalidOrDuplicatedParametersDeclineTheOfferOnly() {
        for bad in ["permessage-deflate; server_max_window_bits", "permessage-deflate; server_max_window_bits=16",
                    "permessage-deflate; client_max_window_bits=7", "permessage-deflate; server_max_window_bits=010",
                    "permessage-deflate; server_no_context_takeover=1", "permessage-deflate; unknown_parameter",
                    "permessage-deflate; client_no_context_takeover; client_no_context_takeover"] {
            #expect(agree(bad) == nil, "\(bad)")
            // A later acceptable offer is still taken.
            #expect(agree("\(bad), permessage-deflate; client_max_window_bits=12", settings { _ in })
                    == "permessage-deflate; client_max_window_bits=12", "\(bad)")
        }
    }

    @Test func otherExtensionsAreIgnored() {
        #expect(agree("x-webkit-deflate-frame, foo; bar=1") == nil)
        #expect(agree("x-webkit-deflate-frame, permessage-deflate", settings { _ in }) == "permessage-deflate")
        #expect(agree("x-webkit-deflate-frame, permessage-deflate") == "permessage-deflate; client_no_context_takeover; server_max_window_bits=11")
    }
}

@Suite struct DeflateFrames {
    /// §7.2.3.1: "Hello" as one compressed frame.
    @Test func helloInOneFrame() {
        var session = compressedSession()
        let got = actions(&session, clientFrame(1, [0xF2, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00], rsv: 4))
        #expect(got == [.deliver(text("Hello"), .text, start: true, end: true)])
    }

    /// §7.2.3.1: the same message split over two frames, RSV1 on the first only.
    @Test func helloFragmented() {
        var session = compressedSession()
        let bytes = clientFrame(1, [0xF2, 0x48, 0xCD], fin: false, rsv: 4) + clientFrame(0, [0xC9, 0xC9, 0x07, 0x00])
        let got = actions(&session, bytes)
        #expect(deliveredText(got) == text("Hello"))
        #expect(got.last == .deliver([], .text, start: false, end: true) || { if case .deliver(_, _, _, true) = got.last! { return true }; return false }())
    }

    /// §7.2.3.2: with context takeover the second "Hello" refers back to the first.
    @Test func sharedWindow() {
        var session = compressedSession()
        let bytes = clientFrame(1, [0xF2, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00], rsv: 4)
            + clientFrame(1, [0xF2, 0x00, 0x11, 0x00, 0x00], rsv: 4)
        #expect(actions(&session, bytes) == [.deliver(text("Hello"), .text, start: true, end: true),
                                             .deliver(text("Hello"), .text, start: true, end: true)])
    }

    /// §7.2.3.3: a DEFLATE block with no compression; §7.2.3.5: two blocks in one message;
    /// §7.2.3.4: BFINAL set, with a byte after the end of the stream; §7.2.3.6: empty message.
    @Test func otherBlockForms() {
        let cases: [[UInt8]: [UInt8]] = [
            [0x00, 0x05, 0x00, 0xFA, 0xFF, 0x48, 0x65, 0x6C, 0x6C, 0x6F, 0x00]: text("Hello"),
            [0xF2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xCA, 0xC9, 0xC9, 0x07, 0x00]: text("Hello"),
            [0xF3, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00, 0x00]: text("Hello"),
            [0x00]: [],
        ]
        for (payload, expected) in cases {
            var session = compressedSession()
            let got = actions(&session, clientFrame(2, payload, rsv: 4))
            #expect(deliveredText(got) == expected, "\(payload)")
            if case .deliver(_, .binary, true, true)? = got.first {} else { Issue.record("one whole binary message expected: \(got)") }
        }
    }

    /// A message ending its DEFLATE stream with BFINAL does not lose the window: the next message
    /// may still refer back into it (context takeover).
    @Test func windowSurvivesAFinalBlock() {
        var session = compressedSession()
        let bytes = clientFrame(1, [0xF3, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00], rsv: 4)
            + clientFrame(1, [0xF2, 0x00, 0x11, 0x00, 0x00], rsv: 4)
        #expect(actions(&session, bytes) == [.deliver(text("Hello"), .text, start: true, end: true),
                                             .deliver(text("Hello"), .text, start: true, end: true)])
    }

    @Test func compressorMatchesTheRFCExamples() {
        let deflate = PerMessageDeflate(parameters: wideOpen, pool: CompressionPool(settings: DeflateSettings()))
        #expect(compress(deflate, text("Hello"))?.map(\.0) == [[0xF2, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00]])
        #expect(compress(deflate, text("Hello"))?.map(\.0) == [[0xF2, 0x00, 0x11, 0x00, 0x00]])
        #expect(compress(deflate, []) == nil, "an empty message goes uncompressed")
        // ...and leaves the window alone: a receiver keeping context decodes what follows.
        let third = compress(deflate, text("Hello"))!
        var session = compressedSession()
        let wire = clientFrame(1, [0xF2, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00], rsv: 4) + clientFrame(1, [0xF2, 0x00, 0x11, 0x00, 0x00], rsv: 4)
            + clientFrame(1, []) + clientFrame(1, third[0].0, rsv: 4)
        #expect(actions(&session, wire).map { if case .deliver(let p, _, _, _) = $0 { p } else { [] } }
                == [text("Hello"), text("Hello"), [], text("Hello")])
        var noContext = wideOpen
        noContext.serverNoContextTakeover = true
        let fresh = PerMessageDeflate(parameters: noContext, pool: CompressionPool(settings: DeflateSettings()))
        let long = text(String(repeating: "Hello, ", count: 40))
        let first = compress(fresh, long), second = compress(fresh, long)
        #expect(first != nil && first?.count == 1 && first?[0].1 == true && first?[0].2 == true)
        #expect(first?.map(\.0) == second?.map(\.0), "no context: each message compresses the same")
    }

    @Test func incompressibleMessageGoesPlainWithoutContext() {
        var noContext = wideOpen
        noContext.serverNoContextTakeover = true
        let deflate = PerMessageDeflate(parameters: noContext, pool: CompressionPool(settings: DeflateSettings()))
        var rng = SystemRandomNumberGenerator()
        let random = (0..<4096).map { _ in UInt8.random(in: 0...255, using: &rng) }
        #expect(compress(deflate, random) == nil)
        #expect(compress(deflate, text("Hello")) == nil, "5 bytes do not shrink either")
        let minimum = PerMessageDeflate(parameters: wideOpen, pool: CompressionPool(settings: DeflateSettings()), minimumSize: 100)
        #expect(compress(minimum, Array(repeating: 0x61, count: 99)) == nil)
        #expect(compress(minimum, Array(repeating: 0x61, count: 100)) != nil)
    }

    /// A large message leaves in frames of at most one chunk, and inflates back whole.
    @Test func largeMessagesRoundTripInFrames() {
        let deflate = PerMessageDeflate(parameters: wideOpen, pool: CompressionPool(settings: DeflateSettings()))
        var rng = SystemRandomNumberGenerator()
        let message = (0..<300_000).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let frames = compress(deflate, message)!
        #expect(frames.count > 1)
        #expect(frames.allSatisfy { $0.0.count <= CompressionPool.chunkSize })
        #expect(frames.first!.1 && !frames.dropFirst().contains { $0.1 } && frames.last!.2 && !frames.dropLast().contains { $0.2 })
        var wire: [UInt8] = []
        for (i, frame) in frames.enumerated() {
            wire += clientFrame(i == 0 ? 2 : 0, frame.0, fin: frame.2, rsv: frame.1 ? 4 : 0)
        }
        var session = compressedSession()
        let got = actions(&session, wire)
        #expect(deliveredText(got) == message)
        #expect(got.allSatisfy { if case .deliver(let p, _, _, _) = $0 { p.count <= CompressionPool.chunkSize } else { true } })
    }
}

@Suite struct DeflateViolations {
    @Test func rsv1RulesAreProtocolErrors() {
        var plain = WebSocketSession(maxMessageSize: 1 << 20)
        #expect(actions(&plain, clientFrame(1, [0x00], rsv: 4)) == [.fail(1002, sendClose: true)])
        var session = compressedSession()
        #expect(actions(&session, clientFrame(9, [], rsv: 4)) == [.fail(1002, sendClose: true)], "control frame")
        session = compressedSession()
        let continuation = clientFrame(1, [0xF2, 0x48], fin: false, rsv: 4) + clientFrame(0, [0xCD, 0x00], rsv: 4)
        #expect(actions(&session, continuation).last == .fail(1002, sendClose: true))
        session = compressedSession()
        #expect(actions(&session, clientFrame(1, [0x00], rsv: 2)) == [.fail(1002, sendClose: true)], "RSV2")
    }

    @Test func undecodableDataIs1007ForTextAnd1002ForBinary() {
        var session = compressedSession()
        #expect(actions(&session, clientFrame(1, [0xFF, 0xFF, 0xFF, 0xFF], rsv: 4)).last == .fail(1007, sendClose: true))
        session = compressedSession()
        #expect(actions(&session, clientFrame(2, [0xFF, 0xFF, 0xFF, 0xFF], rsv: 4)).last == .fail(1002, sendClose: true))
    }

    @Test func invalidUTF8AfterInflatingIs1007() {
        var session = compressedSession()
        let deflate = PerMessageDeflate(parameters: wideOpen, pool: CompressionPool(settings: DeflateSettings()))
        let frames = compress(deflate, [0x61, 0xC3, 0x28, 0x61])!
        #expect(actions(&session, clientFrame(1, frames[0].0, rsv: 4)).last == .fail(1007, sendClose: true))
    }

    /// A decompression bomb: 16 MiB of zeros compress to ~16 KiB; with a 1 MiB limit the session
    /// fails with 1009 after producing at most the limit, in chunks of the pool's size.
    @Test func bombStopsAtTheLimitInBoundedSteps() {
        let deflate = PerMessageDeflate(parameters: wideOpen, pool: CompressionPool(settings: DeflateSettings()))
        let frames = compress(deflate, [UInt8](repeating: 0, count: 16 << 20))!
        let payload = frames.flatMap(\.0)
        #expect(payload.count < 32 << 10)
        var session = compressedSession(max: 1 << 20)
        let got = actions(&session, clientFrame(2, payload, rsv: 4))
        #expect(got.last == .fail(1009, sendClose: true))
        let delivered = deliveredText(got).count
        #expect(delivered <= 1 << 20)
        #expect(got.allSatisfy { if case .deliver(let p, _, _, _) = $0 { p.count <= CompressionPool.chunkSize } else { true } })
    }

    @Test func exactlyTheLimitPasses() {
        let deflate = PerMessageDeflate(parameters: wideOpen, pool: CompressionPool(settings: DeflateSettings()))
        let payload = compress(deflate, [UInt8](repeating: 0x41, count: 1 << 20))!.flatMap(\.0)
        var session = compressedSession(max: 1 << 20)
        let got = actions(&session, clientFrame(2, payload, rsv: 4))
        #expect(deliveredText(got).count == 1 << 20)
        if case .deliver(_, _, _, true)? = got.last {} else { Issue.record("message should complete: \(String(describing: got.last))") }
    }
}

