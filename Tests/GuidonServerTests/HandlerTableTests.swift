@testable import GuidonServer
import Testing

@Suite("An event loop's handler table")
struct HandlerTableTests {
    final class Handler: EventLoopHandler {
        func ready(_ events: UInt32) {}
        func drain() {}
        func close() {}
    }

    @Test func aRemovedHandlersTokenFindsNothingEvenWhenItsSlotIsReused() {
        var table = HandlerTable()
        let (a, b, c) = (Handler(), Handler(), Handler())
        let tokenA = table.add(a)
        let tokenB = table.add(b)
        #expect(tokenA != 0 && tokenB != 0 && tokenA != tokenB)
        #expect(table[tokenA] === a && table[tokenB] === b)

        table.remove(tokenA)
        #expect(table[tokenA] == nil)
        let tokenC = table.add(c)
        #expect(tokenC != tokenA, "the slot is reused under a new generation")
        #expect(table[tokenA] == nil, "an event for the old handler, later in the same batch, finds nothing")
        #expect(table[tokenC] === c && table[tokenB] === b)

        table.remove(tokenA)  // a second removal of a stale token does not free C's slot
        #expect(table[tokenC] === c)
        #expect(Set(table.all.map(ObjectIdentifier.init)) == [ObjectIdentifier(b), ObjectIdentifier(c)])
        #expect(table[0] == nil, "0 is the wake-up's token")
    }
}
