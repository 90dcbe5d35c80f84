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

        Starting(int blocks, long seed, boolean failAwait) {
            super(blocks, seed, true);
            this.failAwait = failAwait;
        }

        @Override
        public Pending start(int fd, long pos) {
            events.add("start " + fd);
            return () -> {
                events.add("await " + fd);
                if (failAwait) throw new IOException("injected: the device is gone");
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
}
