import CLinux
import Glibc

/// Something that owns a registered descriptor and reacts to its readiness.
public protocol EventHandler: AnyObject {
    func handleEvent(_ events: UInt32)
}

/// The single-threaded epoll loop. Level-triggered; each registration gets a slot and a generation
/// number, both stored in `epoll_data`, so an event queued for a descriptor that was closed (and
/// maybe reused) earlier in the same batch is recognised as stale and dropped.
public final class Reactor {
    public struct Token: Equatable {
        let slot: Int32
        let generation: UInt32
        var packed: UInt64 { UInt64(generation) << 32 | UInt64(UInt32(bitPattern: slot)) }
    }

    private let epollFD: Int32
    private var handlers: [EventHandler?] = []
    private var generations: [UInt32] = []
    private var freeSlots: [Int32] = []
    private var events: UnsafeMutablePointer<epoll_event>
    private let eventCapacity = 256
    /// Registrations to visit on the next turn without waiting for the kernel: bytes already
    /// buffered in user space (by TLS, or held back while reading was paused) that epoll cannot
    /// announce, and failures found in the middle of another handler's work.
    private var soon: [Token] = []
    private var soonSpare: [Token] = []
    /// Per slot: already in `soon`. A registration is visited once per turn however often it
    /// asks, so wake-ups cannot multiply from one turn to the next.
    private var wakePending: [Bool] = []

    public init() throws(SystemError) {
        let fd = epoll_create1(Int32(EPOLL_CLOEXEC))
        guard fd >= 0 else { throw SystemError("epoll_create1") }
        epollFD = fd
        events = .allocate(capacity: eventCapacity)
    }

    deinit {
        events.deallocate()
        close(epollFD)
    }

    public func register(_ fd: Int32, events mask: UInt32, handler: EventHandler) throws(SystemError) -> Token {
        let slot: Int32
        if let reused = freeSlots.popLast() {
            slot = reused
        } else {
            slot = Int32(handlers.count)
            handlers.append(nil)
            generations.append(0)
            wakePending.append(false)
        }
        let token = Token(slot: slot, generation: generations[Int(slot)])
        var event = epoll_event(events: mask, data: epoll_data_t(u64: token.packed))
        guard epoll_ctl(epollFD, EPOLL_CTL_ADD, fd, &event) == 0 else {
            let error = SystemError("epoll_ctl(ADD)")
            freeSlots.append(slot)
            throw error
        }
        handlers[Int(slot)] = handler
        return token
    }

    public func modify(_ fd: Int32, token: Token, events mask: UInt32) {
        var event = epoll_event(events: mask, data: epoll_data_t(u64: token.packed))
        if epoll_ctl(epollFD, EPOLL_CTL_MOD, fd, &event) != 0 {
            Log.error("\(SystemError("epoll_ctl(MOD)")) on fd \(fd)")
        }
    }

    /// Hands a registration to another handler (a connected socket passing from its connector to
    /// the endpoint that uses it) without touching the epoll set.
    public func replaceHandler(_ token: Token, with handler: EventHandler) {
        let slot = Int(token.slot)
        guard generations[slot] == token.generation, handlers[slot] != nil else { return }
        handlers[slot] = handler
    }

    /// Calls the handler with `EpollEvents.deferred` on the next turn of the loop, after the events
    /// the kernel reports; the poll of that turn does not wait.
    public func wakeSoon(_ token: Token) {
        let slot = Int(token.slot)
        guard generations[slot] == token.generation, !wakePending[slot] else { return }
        wakePending[slot] = true
        soon.append(token)
    }

    /// Forgets a registration. The caller closes the descriptor, which removes it from the epoll set.
    public func unregister(_ token: Token) {
        let slot = Int(token.slot)
        guard generations[slot] == token.generation, handlers[slot] != nil else { return }
        handlers[slot] = nil
        generations[slot] &+= 1
        wakePending[slot] = false
        freeSlots.append(token.slot)
    }

    /// Waits up to `timeoutMilliseconds` and dispatches what is ready. Returns the number of events.
    @discardableResult
    public func poll(timeoutMilliseconds: Int32) -> Int {
        let n = epoll_wait(epollFD, events, Int32(eventCapacity), soon.isEmpty ? timeoutMilliseconds : 0)
        if n < 0 {
            if errno != EINTR { Log.error("\(SystemError("epoll_wait"))") }
            return 0
        }
        for i in 0..<Int(n) {
            let packed = events[i].data.u64
            let slot = Int(Int32(bitPattern: UInt32(truncatingIfNeeded: packed)))
            let generation = UInt32(truncatingIfNeeded: packed >> 32)
            guard slot < handlers.count, generations[slot] == generation, let handler = handlers[slot] else { continue }
            handler.handleEvent(events[i].events)
        }
        if !soon.isEmpty {
            // Swap buffers: a handler woken now may ask to be woken again on the next turn.
            swap(&soon, &soonSpare)
            for token in soonSpare {
                let slot = Int(token.slot)
                guard generations[slot] == token.generation, let handler = handlers[slot] else { continue }
                wakePending[slot] = false
                handler.handleEvent(EpollEvents.deferred)
            }
            soonSpare.removeAll(keepingCapacity: true)
        }
        return Int(n)
    }
}

/// epoll event bits as UInt32, the type `epoll_event.events` has.
public enum EpollEvents {
    public static let readable = UInt32(EPOLLIN.rawValue)
    public static let writable = UInt32(EPOLLOUT.rawValue)
    public static let hangup = UInt32(EPOLLHUP.rawValue)
    public static let error = UInt32(EPOLLERR.rawValue)
    /// Not from the kernel: a wake-up asked for with `Reactor.wakeSoon`. The bit is EPOLLONESHOT's,
    /// an input-only flag epoll never reports.
    public static let deferred = UInt32(EPOLLONESHOT.rawValue)
}
