/// The shared peers of this process, by route: clients naming the same peer address with
/// sharing on (or a FIFO, standard input) join the same one. They live until the process ends.
final class SharedPeers {
    unowned let server: Server
    private var peers: [String: SharedPeer] = [:]

    init(server: Server) { self.server = server }

    /// The shared peer for a backend's choice: the one already there for its address, or a new one
    /// with this choice's framing and settings (the first client's route decides them).
    func peer(for choice: PeerChoice, settings: SharingSettings) -> SharedPeer {
        let key = choice.address.description
        if let found = peers[key] { return found }
        let made = SharedPeer(key: key, address: choice.address, settings: settings,
                              framing: choice.framing.map { ($0, choice.framingConfig) }, server: server)
        peers[key] = made
        return made
    }

    var all: [SharedPeer] { Array(peers.values) }

    func sweep(now: Int64) {
        for peer in peers.values { peer.sweep(now: now) }
    }

    func stopAll() {
        for peer in peers.values { peer.stop() }
    }
}
