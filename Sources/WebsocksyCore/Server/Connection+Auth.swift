import Glibc

/// Authentication before any backend or peer work: the token (at once, on the loop) and the
/// htpasswd password (on its own thread: bcrypt is slow by design).
extension Connection {
    /// `token`: what `Authenticator.takeToken` took out of the request.
    func authenticateUpgrade(_ request: HandshakeRequest, token: String?) {
        guard let auth = server.auth else { return queryBackend(request) }
        var request = request
        if let rejection = auth.verifyToken(token, for: &request, now: Double(time(nil))) { return refuse(rejection) }
        record.user = request.user
        guard auth.passwords != nil else { return queryBackend(request) }
        checkPassword(request.headers) { [unowned self] user in
            if request.user == nil { request.user = user }
            self.queryBackend(request)
        }
    }

    /// The web root is guarded by the password file alone (a page has no token yet).
    func authenticatePlain(_ request: PlainRequest) {
        guard server.auth?.passwords != nil else { return servePlain(request) }
        checkPassword(request.headers) { [unowned self] _ in self.servePlain(request) }
    }

    private func checkPassword(_ headers: HeaderFields, then proceed: @escaping (String) -> Void) {
        guard let auth = server.auth, let file = auth.passwords, let checks = server.passwordChecks else { return }
        let challenge = auth.basicChallenge
        switch BasicCredentials.parse(headers.first("Authorization")) {
        case .missing:
            refuse(.init(.unauthorized, "no user and password (basic authentication)", challenge: challenge))
        case .malformed:
            refuse(.init(.unauthorized, "malformed basic credentials", challenge: challenge))
        case .credentials(let user, _) where auth.recentlyVerified(headers.first("Authorization")!, now: server.now):
            if record.user == nil { record.user = user }
            proceed(user)
        case .credentials(let user, let password):
            let authorization = headers.first("Authorization")!
            let queued = checks.check(.init(file: file, user: user, password: password), client: client4or6.map { ForwardedClient.hostPart($0.description) } ?? clientAddress) { [unowned self] matched in
                pendingPasswordCheck = nil
                client.inboxLimit = Int.max
                guard matched else {
                    return refuse(.init(.unauthorized, "wrong user or password (user \(LogText.capped(user, to: 64)))", challenge: challenge))
                }
                server.auth?.rememberVerified(authorization, now: server.now)
                if record.user == nil { record.user = user }
                proceed(user)
            }
            switch queued {
            case .success(let id): pendingPasswordCheck = id
            case .failure(.busy): return refuse(.init(.serviceUnavailable, "too many password checks waiting"))
            case .failure(.clientBusy): return refuse(.init(.tooManyRequests, "password checks from this address already waiting", retryAfter: 1))
            }
            setState(.authenticating)
            deadline = server.now + server.limits.backendTimeoutMilliseconds
            client.inboxLimit = client.inbox.count + Self.inboxWhileWaiting
        }
    }
}
