package org.ublkmirror.mirror;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.ublkmirror.frontend.BlockTarget;
import org.ublkmirror.frontend.StoreTarget;
import org.ublkmirror.leg.FileStore;
import org.ublkmirror.sys.LibC;

import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The contract ublk zero copy relies on ({@link BlockTarget#directRead}): reading the returned
 * descriptor at offset + x gives exactly what the target's read at x gives, after writes,
 * discards and detached writes, also once the leg's path is unlinked; the descriptor is
 * read-only; and a mirror whose primary is not a plain local file offers none.
 */
class DirectReadTest {
    static final int BS = 4096;

    @TempDir
    Path dir;
    Mirror m;
    BlockTarget.DirectRead d;

    @AfterEach
    void close() throws Exception {
        if (d != null) LibC.get().close(d.fd());
        if (m != null && m.state() != Mirror.State.CLOSED) m.close();
    }

    /** The bytes at volume offset {@code off}, read through the direct descriptor. */
    static ByteBuffer direct(BlockTarget.DirectRead d, long off, int len) throws Exception {
        try (FileChannel ch = FileChannel.open(Path.of("/proc/self/fd/" + d.fd()), StandardOpenOption.READ)) {
            ByteBuffer b = ByteBuffer.allocate(len);
            while (b.hasRemaining()) {
                if (ch.read(b, d.offset() + off + b.position()) < 0) break;
            }
            return b.flip();
        }
    }

    static ByteBuffer viaTarget(BlockTarget t, long off, int len) throws Exception {
        ByteBuffer b = ByteBuffer.allocateDirect(len);
        t.read(off, b);
        b.flip();
        ByteBuffer h = ByteBuffer.allocate(len);
        h.put(b).flip();
        return h;
    }

    static ByteBuffer random(Random r, int len) {
        byte[] a = new byte[len];
        r.nextBytes(a);
        ByteBuffer b = ByteBuffer.allocateDirect(len);
        b.put(a).flip();
        return b;
    }

    void assertSameEverywhere(BlockTarget t, long size) throws Exception {
        for (long off = 0; off < size; off += 1 << 20) {
            int len = (int) Math.min(1 << 20, size - off);
            assertEquals(viaTarget(t, off, len), direct(d, off, len), "volume bytes at " + off + " differ between read() and the direct descriptor");
        }
    }

    @Test
    void mirrorDirectReadsSeeWhatReadSeesAndSurviveUnlink() throws Exception {
        MirrorConfig cfg = new MirrorConfig("d", dir.resolve("p.img"), dir.resolve("s.img"), null, 1, 60_000);
        Mirror.create(cfg, 16L << 20, BS, false, null);
        m = Mirror.open(cfg, new Mirror.Options());
        d = m.directRead();
        assertNotNull(d, "a mirror over local files offers direct reads");
        assertEquals(m.sizeBytes(), d.length());
        assertTrue(d.offset() > 0 && d.offset() % BS == 0, "the volume sits after the leg's metadata: " + d.offset());
        assertEquals(cfg.primary(), d.describe());
        Random r = new Random(7);
        // writes of several sizes, one FUA; a discard; writes while detached (tracked, primary only)
        for (int i = 0; i < 200; i++) {
            int blocks = 1 + r.nextInt(64);
            long blk = r.nextInt((int) (m.sizeBytes() / BS) - blocks);
            m.write(blk * BS, random(r, blocks * BS), i % 17 == 0);
        }
        m.discard(3L << 20, 1L << 20);
        m.detach();
        m.write(5L << 20, random(r, 256 << 10), false);
        assertSameEverywhere(m, m.sizeBytes());
        ByteBuffer zero = direct(d, 3L << 20, 1 << 20);
        while (zero.hasRemaining()) assertEquals(0, zero.get(), "a discarded range reads as zeroes through the descriptor");
        // the descriptor is the file itself, not its name: unlinking the leg changes nothing
        Files.delete(Path.of(cfg.primary()));
        m.write(9L << 20, random(r, 64 << 10), false);
        assertSameEverywhere(m, m.sizeBytes());
        // read-only: a write through it is refused, and no byte of the volume changes
        ByteBuffer before = viaTarget(m, 0, 1 << 20);
        long w = LibC.get().pwrite(d.fd(), ByteBuffer.allocateDirect(BS), BS, d.offset());
        assertTrue(w < 0, "the direct descriptor must be read-only, a pwrite returned " + w);
        assertEquals(before, viaTarget(m, 0, 1 << 20));
    }

    @Test
    void storeTargetDirectReadsAreTheFile() throws Exception {
        Path f = dir.resolve("plain.img");
        byte[] a = new byte[4 << 20];
        new Random(3).nextBytes(a);
        Files.write(f, a);
        try (FileStore s = FileStore.open(f)) {
            StoreTarget t = new StoreTarget(s, BS);
            d = t.directRead();
            assertEquals(0, d.offset());
            assertEquals(4 << 20, d.length());
            t.write(BS * 10, random(new Random(4), 8 * BS), false);
            assertSameEverywhere(t, t.sizeBytes());
        }
    }

    @Test
    void noDirectReadsWhenThePrimaryIsNotAPlainFile() throws Exception {
        m = FaultyMirror.open("f");
        assertNull(m.directRead(), "a decorated (or remote) primary must serve every read through the engine");
    }
}
