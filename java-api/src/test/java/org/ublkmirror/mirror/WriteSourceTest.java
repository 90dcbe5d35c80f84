package org.ublkmirror.mirror;

import org.junit.jupiter.api.Test;
import org.ublkmirror.frontend.StoreTarget;
import org.ublkmirror.leg.FileStore;
import org.ublkmirror.leg.WriteSource;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Writes whose bytes the legs take from the source itself ({@link WriteSource#writeTo}: ublk's
 * WRITE_FIXED from the request's buffer, docs/frontend-ublk.md): each file leg is handed its own
 * descriptor and the byte position of the blocks, once; any other leg, and a source that cannot
 * write itself, gets the bytes from {@link WriteSource#buffer}. The bytes on both legs are the
 * same either way, and tags, tracking and resync are as for a buffer write.
 */
class WriteSourceTest extends MirrorFixture {

    /** Writes itself through the descriptor it is given, as the shim does, and records each call. */
    static class Recording implements WriteSource {
        final ByteBuffer data;
        final boolean canWrite;
        final List<long[]> writes = new ArrayList<>(); // {fd, pos}
        int buffers;

        Recording(int blocks, long seed, boolean canWrite) {
            data = ByteBuffer.allocateDirect(blocks * BS);
            while (data.hasRemaining()) data.putLong(seed * 131 + data.position());
            data.flip();
            this.canWrite = canWrite;
        }

        @Override
        public int length() {
            return data.remaining();
        }

        @Override
        public ByteBuffer buffer() {
            buffers++;
            return data.duplicate();
        }

        @Override
        public boolean writeTo(int fd, long pos) throws IOException {
            if (!canWrite) return false;
            try (FileChannel ch = FileChannel.open(Path.of("/proc/self/fd/" + fd), StandardOpenOption.WRITE)) {
                ByteBuffer d = data.duplicate();
                long at = pos;
                while (d.hasRemaining()) at += ch.write(d, at);
            }
            writes.add(new long[] {fd, pos});
            return true;
        }
    }

    /** Also starts writes ({@link WriteSource#start}): each is made only when awaited; the events are logged. */
    static final class Starting extends Recording {
        final List<String> events = new ArrayList<>();
        final boolean failAwait;
        /** Only the started write with this index (0: the first) fails when awaited; -1: as failAwait says. */
        final int failOnly;
        private int starts;

        Starting(int blocks, long seed, boolean failAwait) {
            this(blocks, seed, failAwait, -1);
        }

        Starting(int blocks, long seed, boolean failAwait, int failOnly) {
            super(blocks, seed, true);
            this.failAwait = failAwait;
            this.failOnly = failOnly;
        }

        @Override
        public Pending start(int fd, long pos) {
            events.add("start " + fd);
            boolean fail = failOnly >= 0 ? starts == failOnly : failAwait;
            starts++;
            return () -> {
                events.add("await " + fd);
                if (fail) throw new IOException("injected: the device is gone");
                writeTo(fd, pos);
            };
        }

        @Override
        public boolean writeTo(int fd, long pos) throws IOException {
            events.add("write " + fd);
            return super.writeTo(fd, pos);
        }
    }

    private MirrorConfig fileMirror() throws IOException {
        MirrorConfig cfg = new MirrorConfig("h", dir.resolve("p.img"), dir.resolve("s.img"), null, 1, 60_000);
        Mirror.create(cfg, 8 * REGION, BS, false, null);
        m = Mirror.open(cfg, new Mirror.Options());
        return cfg;
    }

    private ByteBuffer readBack(long offset, int len) throws IOException {
        ByteBuffer b = ByteBuffer.allocateDirect(len);
        m.read(offset, b);
        return b.flip();
    }

    private static void assertLegsIdentical(MirrorConfig cfg) throws IOException {
        try (Inspect in = Inspect.open(cfg)) {
            assertTrue(in.verify(1 << 20).identical(), "legs identical");
        }
    }

    @Test
    void eachFileLegWritesTheSourceOnceAtItsOwnPosition() throws Exception {
        MirrorConfig cfg = fileMirror();
        long pOff = m.primary().data().offset(), sOff = m.secondary().data().offset();
        Recording src = new Recording(3, 1, true);
        m.write(5 * BS, src, false);
        assertEquals(2, src.writes.size(), "one write per leg");
        assertNotEquals(src.writes.get(0)[0], src.writes.get(1)[0], "each leg its own descriptor");
        assertEquals(pOff + 5 * BS, src.writes.get(0)[1], "the primary's byte position of block 5");
        assertEquals(sOff + 5 * BS, src.writes.get(1)[1], "the secondary's byte position of block 5");
        assertEquals(0, src.buffers, "no copy through Java");
        assertEquals(src.data.duplicate(), readBack(5 * BS, 3 * BS));

        // FUA: the same, through each leg's O_DSYNC descriptor
        Recording fua = new Recording(1, 2, true);
        m.write(REGION, fua, true);
        assertEquals(2, fua.writes.size());
        assertNotEquals(src.writes.get(0)[0], fua.writes.get(0)[0], "the primary's O_DSYNC descriptor");
        assertNotEquals(src.writes.get(1)[0], fua.writes.get(1)[0], "the secondary's O_DSYNC descriptor");
        assertEquals(fua.data.duplicate(), readBack(REGION, BS));
        assertEquals(2, m.forker().writes(), "tagged like any write");
        m.close();
        assertLegsIdentical(cfg);
    }

    @Test
    void thePrimarysWriteIsInFlightWhileTheSecondarysIsMade() throws Exception {
        MirrorConfig cfg = fileMirror();
        Starting src = new Starting(2, 9, false);
        m.write(9 * BS, src, false);
        assertEquals(4, src.events.size(), src.events.toString());
        String pFd = src.events.get(0).substring("start ".length());
        assertEquals(List.of("start " + pFd, "write " + src.writes.get(0)[0], "await " + pFd, "write " + pFd),
                src.events, "primary started, secondary written, primary awaited");
        assertNotEquals(pFd, String.valueOf(src.writes.get(0)[0]), "the secondary's own descriptor");
        assertEquals(0, src.buffers);
        assertEquals(src.data.duplicate(), readBack(9 * BS, 2 * BS));
        m.close();
        assertLegsIdentical(cfg);
    }

    @Test
    void aPrimaryWriteThatFailsInFlightFailsTheRequestAfterTheSecondarysIsMade() throws Exception {
        fileMirror();
        Starting src = new Starting(1, 10, true);
        java.io.IOException e = assertThrows(java.io.IOException.class, () -> m.write(BS, src, false));
        assertTrue(e.getMessage().startsWith("primary write failed: write of 4096 bytes at "), e.getMessage());
        assertTrue(e.getMessage().endsWith("failed: injected: the device is gone"), e.getMessage());
        assertEquals(3, src.events.size(), "started, the secondary written, awaited: " + src.events);
        assertTrue(src.events.get(2).startsWith("await "), src.events.toString());
    }

    @Test
    void aSourceThatCannotWriteItselfIsWrittenFromItsBuffer() throws Exception {
        MirrorConfig cfg = fileMirror();
        Recording src = new Recording(2, 3, false);
        m.write(7 * BS, src, false);
        assertEquals(0, src.writes.size());
        assertEquals(2, src.buffers, "each leg asked for the bytes");
        assertEquals(src.data.duplicate(), readBack(7 * BS, 2 * BS));
        m.close();
        assertLegsIdentical(cfg);
    }

    @Test
    void aDecoratedLegTakesTheBuffer() throws Exception {
        m = FaultyMirror.open("ws");
        Recording src = new Recording(2, 4, true);
        m.write(4 * BS, src, false);
        assertEquals(0, src.writes.size(), "a FaultyStore is not a file: it never gets a descriptor");
        assertEquals(2, src.buffers);
        assertEquals(src.data.duplicate(), readBack(4 * BS, 2 * BS));
    }

    @Test
    void degradedTheSecondarysPartIsTrackedAndResyncedFromThePrimary() throws Exception {
        MirrorConfig cfg = fileMirror();
        m.write(0, new Recording(1, 5, true), false);
        m.detach();
        Recording src = new Recording(4, 6, true);
        m.write(2 * REGION + 8 * BS, src, false);
        assertEquals(1, src.writes.size(), "only the primary is written");
        assertEquals(4, m.trackedWriteBlocks(), "the secondary's 4 blocks are tracked");
        ResyncRunner r = m.attach(0, false);
        assertTrue(r.awaitDone(60_000));
        assertEquals(Mirror.State.MIRRORED, m.state());
        assertEquals(src.data.duplicate(), readBack(2 * REGION + 8 * BS, 4 * BS));
        m.close();
        assertLegsIdentical(cfg);
    }

    @Test
    void aMisalignedSourceIsRefusedAndWritesNothing() throws Exception {
        MirrorConfig cfg = fileMirror();
        int from = (int) m.primary().data().offset(), to = from + (int) (8 * REGION);
        byte[] before = java.util.Arrays.copyOfRange(Files.readAllBytes(dir.resolve("p.img")), from, to);
        ByteBuffer junk = ByteBuffer.allocateDirect(BS + 512);
        while (junk.hasRemaining()) junk.put((byte) 0x5a);
        WriteSource odd = WriteSource.of(junk.flip());
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> m.write(0, odd, false));
        assertTrue(e.getMessage().contains("is not aligned to the 4096-byte block size"), e.getMessage());
        m.close();
        assertArrayEquals(before, java.util.Arrays.copyOfRange(Files.readAllBytes(dir.resolve("p.img")), from, to),
                "no byte of the primary's data changed");
        assertLegsIdentical(cfg);
    }

    @Test
    void theDescriptorIsTheFileTheStoreOpenedEvenAfterItsPathIsReplaced() throws Exception {
        Path f = dir.resolve("leg.img"), moved = dir.resolve("moved.img");
        try (FileStore s = FileStore.createSparse(f, 1 << 20)) {
            Files.move(f, moved);
            Files.write(f, new byte[1 << 20]); // another file at the old path
            Recording src = new Recording(1, 8, true);
            s.write(BS, src, false);
            assertEquals(1, src.writes.size());
            byte[] expect = new byte[BS];
            src.data.duplicate().get(expect);
            assertArrayEquals(expect, java.util.Arrays.copyOfRange(Files.readAllBytes(moved), BS, 2 * BS),
                    "the store's own file got the bytes");
            assertArrayEquals(new byte[1 << 20], Files.readAllBytes(f), "the file now at its old path did not");
            // so is the descriptor a direct read gets (ublk's shim reads the primary through it)
            int rd = s.openReadOnlyDescriptor();
            try (FileChannel ch = FileChannel.open(Path.of("/proc/self/fd/" + rd), StandardOpenOption.READ)) {
                ByteBuffer got = ByteBuffer.allocate(BS);
                ch.read(got, BS);
                assertArrayEquals(expect, got.array(), "the read-only descriptor reads the store's own file");
            } finally {
                org.ublkmirror.sys.LibC.get().close(rd);
            }
        }
    }

    @Test
    void aPlainFileTargetHandsTheSourceItsDescriptorAtTheVolumeOffset() throws Exception {
        Path f = dir.resolve("plain.img");
        try (FileStore s = FileStore.createSparse(f, 1 << 20)) {
            StoreTarget t = new StoreTarget(s, BS);
            Recording src = new Recording(2, 7, true);
            t.write(3 * BS, src, false);
            assertEquals(1, src.writes.size());
            assertEquals(3 * BS, src.writes.get(0)[1]);
        }
        byte[] all = Files.readAllBytes(f);
        Recording want = new Recording(2, 7, true);
        byte[] expect = new byte[2 * BS];
        want.data.duplicate().get(expect);
        assertArrayEquals(expect, java.util.Arrays.copyOfRange(all, 3 * BS, 5 * BS));
    }

    // ---- writes started with their batch (BlockTarget.startWrite: ublk's "Writes of a batch in flight together")

    private byte[] legBytes(String file, long legOffset, long at, int len) throws IOException {
        int from = (int) (legOffset + at);
        return java.util.Arrays.copyOfRange(Files.readAllBytes(dir.resolve(file)), from, from + len);
    }

    private static byte[] bytes(Recording r) {
        byte[] b = new byte[r.length()];
        r.data.duplicate().get(b);
        return b;
    }

    @Test
    void writesOfABatchAreInFlightTogetherUntilAwaited() throws Exception {
        MirrorConfig cfg = fileMirror();
        long pOff = m.primary().data().offset(), sOff = m.secondary().data().offset();
        Starting a = new Starting(2, 21, false), b = new Starting(3, 22, false);
        WriteSource.Pending pa = m.startWrite(9 * BS, a), pb = m.startWrite(REGION + 4 * BS, b);
        assertNotNull(pa, "a write with its range free is started");
        assertNotNull(pb, "so is a second one, beside the first");
        assertEquals(2, a.events.size(), "both legs started, nothing waited for: " + a.events);
        assertTrue(a.events.get(0).startsWith("start ") && a.events.get(1).startsWith("start "), a.events.toString());
        assertNotEquals(a.events.get(0), a.events.get(1), "each leg its own descriptor");
        assertEquals(2, b.events.size(), b.events.toString());
        assertEquals(2, m.forker().writes(), "both tagged before either leg is written");
        assertArrayEquals(new byte[2 * BS], legBytes("p.img", pOff, 9 * BS, 2 * BS), "not on the primary before it is awaited");
        assertArrayEquals(new byte[2 * BS], legBytes("s.img", sOff, 9 * BS, 2 * BS), "nor on the secondary");
        pb.await();
        pa.await();
        String bp = b.events.get(0).substring(6), bs = b.events.get(1).substring(6);
        assertEquals(List.of("start " + bp, "start " + bs, "await " + bs, "write " + bs, "await " + bp, "write " + bp), b.events,
                "awaited: the secondary's write made, then the primary's");
        assertEquals(0, a.buffers + b.buffers, "no copy through Java");
        assertArrayEquals(bytes(a), legBytes("p.img", pOff, 9 * BS, 2 * BS));
        assertArrayEquals(bytes(a), legBytes("s.img", sOff, 9 * BS, 2 * BS));
        assertArrayEquals(bytes(b), legBytes("p.img", pOff, REGION + 4 * BS, 3 * BS));
        assertArrayEquals(bytes(b), legBytes("s.img", sOff, REGION + 4 * BS, 3 * BS));
        assertEquals(Mirror.State.MIRRORED, m.state());
        m.close();
        assertLegsIdentical(cfg);
    }

    @Test
    void anOverlappingWriteIsNotStartedWhileTheFirstIsInFlight() throws Exception {
        MirrorConfig cfg = fileMirror();
        Starting first = new Starting(4, 23, false), second = new Starting(1, 24, false);
        WriteSource.Pending p1 = m.startWrite(8 * BS, first);
        assertNotNull(p1);
        // the caller holds blocks 8..11: waiting for them here would wait for itself
        assertNull(m.startWrite(10 * BS, second), "overlapping a write in flight: not started");
        assertEquals(List.of(), second.events, "nothing of it started");
        assertEquals(1, m.forker().writes(), "nor tagged");
        WriteSource.Pending after = m.startWrite(12 * BS, new Starting(1, 25, false));
        assertNotNull(after, "the block after the range is free");
        after.await();
        p1.await();
        WriteSource.Pending p2 = m.startWrite(10 * BS, second);
        assertNotNull(p2, "once the first is awaited, the range is free");
        p2.await();
        byte[] want = bytes(first);
        System.arraycopy(bytes(second), 0, want, 2 * BS, BS);
        ByteBuffer got = readBack(8 * BS, 4 * BS);
        byte[] g = new byte[4 * BS];
        got.get(g);
        assertArrayEquals(want, g, "the later write's block over the earlier's");
        assertEquals(3, m.forker().writes());
        m.close();
        assertLegsIdentical(cfg);
    }

    @Test
    void aSecondaryWriteThatFailsInFlightDegradesTracksAndIsResynced() throws Exception {
        MirrorConfig cfg = fileMirror();
        Starting src = new Starting(2, 26, false, 1); // the second start is the secondary's
        WriteSource.Pending p = m.startWrite(3 * REGION, src);
        assertNotNull(p);
        p.await(); // the primary has the bytes: the write is acknowledged
        assertEquals(Mirror.State.DEGRADED, m.state());
        assertEquals(2, m.trackedWriteBlocks(), "the secondary's two blocks are tracked");
        assertArrayEquals(bytes(src), legBytes("p.img", m.primary().data().offset(), 3 * REGION, 2 * BS));
        ResyncRunner r = m.attach(0, false);
        assertTrue(r.awaitDone(60_000));
        assertEquals(Mirror.State.MIRRORED, m.state());
        m.close();
        assertLegsIdentical(cfg);
    }

    @Test
    void aPrimaryWriteThatFailsInFlightFailsItsAwaitAndFreesTheRange() throws Exception {
        fileMirror();
        Starting bad = new Starting(1, 27, false, 0); // the first start is the primary's
        WriteSource.Pending p = m.startWrite(5 * BS, bad);
        assertNotNull(p);
        IOException e = assertThrows(IOException.class, p::await);
        assertTrue(e.getMessage().startsWith("primary write failed: write of 4096 bytes at "), e.getMessage());
        String pfd = bad.events.get(0).substring(6), sfd = bad.events.get(1).substring(6);
        assertEquals(List.of("start " + pfd, "start " + sfd, "await " + sfd, "write " + sfd, "await " + pfd), bad.events,
                "both legs started, both awaited; the primary's failed");
        // the range is free again: a write of it neither waits nor is refused
        Recording next = new Recording(1, 28, true);
        assertTimeoutPreemptively(java.time.Duration.ofSeconds(20), () -> m.write(5 * BS, next, false));
        ByteBuffer got = readBack(5 * BS, BS);
        assertEquals(next.data.duplicate(), got);
    }

    @Test
    void aPlainFileTargetStartsTheSourcesWriteAndLeavesItInFlight() throws Exception {
        Path f = dir.resolve("plain2.img");
        try (FileStore s = FileStore.createSparse(f, 1 << 20)) {
            StoreTarget t = new StoreTarget(s, BS);
            Starting src = new Starting(2, 29, false);
            WriteSource.Pending p = t.startWrite(6 * BS, src);
            assertNotNull(p);
            assertEquals(1, src.events.size(), src.events.toString());
            assertArrayEquals(new byte[2 * BS], java.util.Arrays.copyOfRange(Files.readAllBytes(f), 6 * BS, 8 * BS));
            p.await();
            assertArrayEquals(bytes(src), java.util.Arrays.copyOfRange(Files.readAllBytes(f), 6 * BS, 8 * BS));
        }
    }
}
