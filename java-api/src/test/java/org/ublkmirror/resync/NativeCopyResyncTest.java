package org.ublkmirror.resync;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.roaringbitmap.longlong.Roaring64NavigableMap;
import org.ublkmirror.fork.RangeLock;
import org.ublkmirror.leg.BlockIO;
import org.ublkmirror.leg.FileStore;
import org.ublkmirror.leg.StoreBlockIO;
import org.ublkmirror.sys.NativeLoops;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Random;
import java.util.concurrent.atomic.AtomicInteger;

import static org.junit.jupiter.api.Assertions.*;

/** Resync between two local file legs through the native in-kernel copy, and its Java fallback. */
class NativeCopyResyncTest {
    static final int BS = 4096;
    static final long OFFSET = 3 * BS; // a data area after a header, as a Leg has
    static final long BLOCKS = 4096;   // 16 MiB

    /** Primary random, secondary different random; resyncs every dirty block; legs identical after. */
    private static void resyncAndCompare(Path dir, NativeLoops nl, boolean expectNative) throws Exception {
        Random rnd = new Random(5);
        byte[] a = new byte[(int) (OFFSET + BLOCKS * BS)], b = new byte[a.length];
        rnd.nextBytes(a);
        rnd.nextBytes(b);
        Files.write(dir.resolve("p.img"), a);
        Files.write(dir.resolve("s.img"), b);
        Roaring64NavigableMap dirty = new Roaring64NavigableMap();
        dirty.addRange(0, BLOCKS); // everything differs
        try (FileStore ps = FileStore.open(dir.resolve("p.img")); FileStore ss = FileStore.open(dir.resolve("s.img"))) {
            BlockIO p = new StoreBlockIO(ps, OFFSET, BS, BLOCKS), s = new StoreBlockIO(ss, OFFSET, BS, BLOCKS);
            AtomicInteger copied = new AtomicInteger(), checkpoints = new AtomicInteger();
            Copier copier = Copier.of(p, s, nl);
            assertEquals(expectNative, copier.isNative());
            Resync r = new Resync(p, s, new RangeLock(), Extents.of(dirty, 100), null, new ResyncListener() {
                @Override
                public void onCopied(Extent e) {
                    copied.addAndGet((int) e.count());
                }

                @Override
                public void barrier() {
                }

                @Override
                public void checkpoint() {
                    checkpoints.incrementAndGet();
                }
            }, Resync.Options.DEFAULT.withMaxBlocksPerCopy(100).withCheckpointBytes(4L << 20), copier);
            Progress pr = r.run();
            assertEquals(Progress.State.DONE, pr.state(), String.valueOf(pr.failure()));
            assertEquals(BLOCKS, copied.get());
            assertEquals(BLOCKS, pr.blocksDone());
            assertTrue(checkpoints.get() >= 4, "checkpoints every 4 MiB: " + checkpoints.get());
        }
        byte[] pa = Files.readAllBytes(dir.resolve("p.img")), sa = Files.readAllBytes(dir.resolve("s.img"));
        assertArrayEquals(java.util.Arrays.copyOfRange(pa, (int) OFFSET, pa.length),
                java.util.Arrays.copyOfRange(sa, (int) OFFSET, sa.length), "data areas identical");
        assertArrayEquals(java.util.Arrays.copyOf(b, (int) OFFSET), java.util.Arrays.copyOf(sa, (int) OFFSET),
                "the secondary's header is untouched");
    }

    @Test
    void nativeCopyMakesFileLegsIdentical(@TempDir Path dir) throws Exception {
        NativeLoops nl = NativeLoops.load();
        assertNotNull(nl, "build native/out/libublkmirror.so (make -C native)");
        resyncAndCompare(dir, nl, true);
        // the default choice for two file legs is the native path
        try (FileStore ps = FileStore.open(dir.resolve("p.img")); FileStore ss = FileStore.open(dir.resolve("s.img"))) {
            assertTrue(Copier.of(new StoreBlockIO(ps, 0, BS, 1), new StoreBlockIO(ss, 0, BS, 1)).isNative());
        }
    }

    @Test
    void absentLibraryFallsBackToJava(@TempDir Path dir) throws Exception {
        NativeLoops missing = NativeLoops.loadFrom(List.of(dir.resolve("libublkmirror.so")));
        assertNull(missing);
        resyncAndCompare(dir, missing, false);
    }

    @Test
    void nonFileLegsKeepTheJavaPath(@TempDir Path dir) throws IOException {
        NativeLoops nl = NativeLoops.load();
        assertNotNull(nl);
        Files.write(dir.resolve("p.img"), new byte[BS]);
        try (FileStore ps = FileStore.open(dir.resolve("p.img"))) {
            BlockIO file = new StoreBlockIO(ps, 0, BS, 1);
            BlockIO other = new BlockIO() { // a remote or test volume
                public int blockSize() { return BS; }
                public long blockCount() { return 1; }
                public void read(long block, ByteBuffer dst) { }
                public void write(long block, ByteBuffer src, boolean fua) { }
                public void flush() { }
                public void discard(long block, long count) { }
            };
            assertFalse(Copier.of(file, other, nl).isNative());
            assertFalse(Copier.of(other, file, nl).isNative());
            assertFalse(Copier.of(file, file, null).isNative()); // no library: the transfer-or-Java copier
        }
    }
}
