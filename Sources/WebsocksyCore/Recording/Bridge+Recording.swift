/// Session recording on the bridge: started with the WebSocket (after the 101), ended with it.
/// The hot path holds only `if let recording` per message (`deliver`, `sendFrame`).
extension Bridge {
    /// Starts recording when the route (`record=DIR|off`) or the `[core]` key asks for it.
    func startRecording(_ choice: RecordChoice?) {
        guard let directory = RecordingSettings.directory(for: choice) else { return }
        let writer = RecordingWriter.shared
        guard writer.isRunning else { return }
        let record = connection.record
        let start = RecordingSettings.wallClockMicroseconds()
        let direct = connection.clientAddress
        let forwarded = connection.loggedClient.flatMap { $0 == direct ? nil : $0 } ?? ""
        let target = record.request.hasPrefix("GET ") ? String(record.request.dropFirst(4)) : record.request
        let header = RecordingFormat.Header(startMicroseconds: start, clientAddress: direct, forwardedClient: forwarded,
                                            target: target, peer: record.peer ?? "", subprotocol: record.subprotocol ?? "")
        let name = RecordingSettings.fileName(startMicroseconds: start, client: direct)
        let path = directory.hasSuffix("/") ? directory + name : directory + "/" + name
        Log.debug("\(clientAddress): recording the session to \(path)")
        recording = Recording(path: path, header: header, maxBytes: RecordingSettings.maxBytes, writer: writer)
    }

    /// The session is over: the file closes once what is queued is written.
    func stopRecording() {
        guard let recording else { return }
        recording.close()
        self.recording = nil
    }
}
